# The malformed-input table (docs/reliability.md lists it): each row is a test that runs one qsafe command
# on one broken input and requires a clean failure (run_case.cmake): an exit code 1..125, no crash, hang or
# sanitizer report, and a message naming the file and the offset / row / tensor / key. The inputs are made
# once per test run by make_inputs.sh (fixture "malformed inputs") from a small valid model that
# make_malformed_inputs.cpp writes and then breaks one thing at a time.
# Included from tools/CMakeLists.txt (the cases run the qsafe tool).
add_executable(qsafe_make_malformed_inputs ${CMAKE_CURRENT_LIST_DIR}/make_malformed_inputs.cpp)
target_link_libraries(qsafe_make_malformed_inputs PRIVATE qsafe::qsafe qsafe_project_options)
set(QSAFE_MALFORMED_DIR ${CMAKE_CURRENT_BINARY_DIR}/malformed)
add_test(NAME "malformed: make the inputs"
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/make_inputs.sh $<TARGET_FILE:qsafe_make_malformed_inputs>
                 $<TARGET_FILE:qsafe_cli> ${QSAFE_MALFORMED_DIR})
set_tests_properties("malformed: make the inputs" PROPERTIES FIXTURES_SETUP malformed_inputs)

# malformed_case(NAME EXPECT COMMAND...): @D@ in the command stands for the inputs' folder.
function(malformed_case name expect)
    list(TRANSFORM ARGN REPLACE "@D@" "${QSAFE_MALFORMED_DIR}")
    list(JOIN ARGN "|" command_line)
    add_test(NAME "malformed: ${name}"
             COMMAND ${CMAKE_COMMAND} "-DCOMMAND_LINE=$<TARGET_FILE:qsafe_cli>|${command_line}" "-DEXPECT=${expect}"
                     -P ${CMAKE_CURRENT_LIST_DIR}/run_case.cmake)
    set_tests_properties("malformed: ${name}" PROPERTIES FIXTURES_REQUIRED malformed_inputs)
endfunction()
# A model case: `generate` loads everything (file, config, tensors, tokenizer, chat template) and decodes.
function(malformed_model name file expect)
    malformed_case("${name}" "${expect}" generate -m @D@/${file} -p hello -n 2 -t 1)
endfunction()
set(OFF_ "at byte offset [0-9]+")

# GGUF container
malformed_model("GGUF cut inside the header" truncated-header.gguf "truncated-header.gguf: tensor count at byte offset 8: needs 8 bytes but the file has 5 left")
malformed_model("GGUF cut inside the metadata" truncated-metadata.gguf "truncated-metadata.gguf: key 'tokenizer.ggml.tokens' ${OFF_}: array of 262 string cannot fit")
malformed_model("GGUF cut inside the tensor infos" truncated-tensor-infos.gguf "truncated-tensor-infos.gguf: tensor '[a-z0-9_.]+'.* ${OFF_}: needs [0-9]+ bytes but the file has [0-9]+ left")
malformed_model("GGUF cut inside the tensor data" truncated-data.gguf "truncated-data.gguf: tensor 'output.weight' ${OFF_}: data .* runs past the end of the data section")
malformed_model("GGUF wrong magic" bad-magic.gguf "bad-magic.gguf: magic at byte offset 0: not a GGUF file")
malformed_model("GGUF version 4" version-4.gguf "version-4.gguf: version at byte offset 4: unsupported GGUF version 4")
malformed_model("GGUF version 1" version-1.gguf "version-1.gguf: version at byte offset 4: unsupported GGUF version 1")
malformed_model("GGUF string length 2^63" string-length-2-63.gguf "string-length-2-63.gguf: key of metadata entry #0 at byte offset 24: string length 9223372036854775808 exceeds")
malformed_model("GGUF array of 2^40 elements" array-2-40-elements.gguf "array-2-40-elements.gguf: key 'tokenizer.ggml.merges' ${OFF_}: array of 1099511627776 string cannot fit")
malformed_model("GGUF tensor count 2^60" tensor-count-2-60.gguf "tensor-count-2-60.gguf: tensor count at byte offset 8: 1152921504606846976 tensors cannot fit in the file")
malformed_model("GGUF unknown metadata value type" unknown-value-type.gguf "unknown-value-type.gguf: key 'general.name' value type ${OFF_}: unknown value type 77")
malformed_model("GGUF duplicate key" duplicate-key.gguf "duplicate-key.gguf: key 'general.name' ${OFF_}: duplicate key")
malformed_model("GGUF duplicate tensor name" duplicate-tensor.gguf "duplicate-tensor.gguf: tensor 'blk.1.ffn_up.weight' ${OFF_}: duplicate tensor name")
malformed_model("GGUF unknown ggml type" unknown-ggml-type.gguf "unknown-ggml-type.gguf: tensor 'blk.0.attn_q.weight' ${OFF_}: unknown ggml type id 99")
malformed_model("GGUF tensor type and size disagree" type-size-mismatch.gguf "type-size-mismatch.gguf: tensor 'blk.0.attn_q.weight' ${OFF_}: row length 64 is not a multiple of the q4_K block size 256")
malformed_model("GGUF tensor data past the end of file" data-past-end.gguf "data-past-end.gguf: tensor 'output.weight' ${OFF_}: data .* runs past the end of the data section")
malformed_model("GGUF unaligned tensor data" data-offset-unaligned.gguf "data-offset-unaligned.gguf: tensor '[a-z0-9_.]+' ${OFF_}: data offset [0-9]+ is not a multiple of the alignment 32")
malformed_model("GGUF overlapping tensors" overlapping-tensors.gguf "overlapping-tensors.gguf: tensor 'blk.0.ffn_norm.weight' ${OFF_}: data at offset [0-9]+ overlaps tensor 'blk.0.attn_norm.weight'")
malformed_model("GGUF dimension product overflows 64 bits" dims-overflow-64-bits.gguf "dims-overflow-64-bits.gguf: tensor 'blk.0.attn_q.weight' ${OFF_}: dimensions overflow a 64-bit element count")
# Values
malformed_model("NaN in an F32 weight" nan-in-f32-weight.gguf "nan-in-f32-weight.gguf: tensor 'blk.1.ffn_gate.weight': non-finite value .nan. at row 0, column 17")
malformed_model("Inf in a norm weight" inf-in-norm.gguf "inf-in-norm.gguf: tensor 'output_norm.weight': non-finite value .inf. at row 0, column 3")
malformed_model("Inf in a Q8_0 block scale" inf-in-q8_0-scale.gguf "inf-in-q8_0-scale.gguf: tensor 'blk.0.ffn_down.weight': non-finite value .-?inf. at row 1, column 32 .block 1 of the row.")
malformed_model("rope.freq_base = inf" rope-freq-base-inf.gguf "rope-freq-base-inf.gguf: invalid model config: rope theta and norm epsilon must be positive and finite .rope theta inf")
# Hyper-parameters
malformed_model("head count 0" head-count-0.gguf "head-count-0.gguf: invalid model config: a dimension is zero")
malformed_model("head count does not divide the width" heads-do-not-divide-embedding.gguf "heads-do-not-divide-embedding.gguf: invalid model config: model width 64 is not a multiple of the head count 6")
malformed_model("KV heads do not divide the heads" kv-heads-do-not-divide-heads.gguf "kv-heads-do-not-divide-heads.gguf: invalid model config: head count 4 is not a multiple of the KV head count 3")
malformed_model("block count 10^9" block-count-1e9.gguf "block-count-1e9.gguf: invalid model config: layer count 1000000000 exceeds 16777216")
malformed_model("a block's tensors missing" missing-block.gguf "missing-block.gguf: the model config says 3 blocks, but tensor 'blk.2.attn_norm.weight' is missing")
malformed_model("a tensor missing" missing-tensor.gguf "missing-tensor.gguf: tensor 'blk.1.ffn_up.weight': missing")
malformed_model("context length 0" context-length-0.gguf "context-length-0.gguf: invalid model config: context length is zero")
malformed_model("width disagrees with the tensors" embedding-disagrees-with-tensors.gguf "embedding-disagrees-with-tensors.gguf: tensor 'token_embd.weight': shape .64, 262., expected .96, 262.")
malformed_model("vocabulary larger than the embedding" vocabulary-larger-than-embedding.gguf "vocabulary-larger-than-embedding.gguf: tokenizer.ggml.tokens: the tokenizer has 300 tokens, but the embedding has rows for 262")
malformed_model("tensors claiming more memory than the machine has" embedding-2-TiB.gguf "embedding-2-TiB.gguf: the fp32 token embedding .16777216 x 16384, 1024.0 GiB., 8 linear layers as loaded .[0-9.]+ GiB. and the largest layer as fp32 while it is built .1024.0 GiB. need [0-9.]+ GiB .[0-9]+ bytes., more than this machine's [0-9.]+ GiB of memory")
malformed_model("layers adding up to more memory than the machine has" layers-1-TB.gguf "layers-1-TB.gguf: the fp32 token embedding .262 x 8192, 0.0 GiB., 1793 linear layers as loaded .1024.0 GiB. and the largest layer as fp32 while it is built .1.0 GiB. need 1025.0 GiB .[0-9]+ bytes., more than this machine's [0-9.]+ GiB of memory")
malformed_case("layers adding up to more memory than the machine has, quantized on load" "layers-1-TB.gguf: the fp32 token embedding .262 x 8192, 0.0 GiB., 1793 linear layers as loaded .134.0 GiB. and the largest layer as fp32 while it is built .1.0 GiB. need 135.0 GiB .[0-9]+ bytes., more than this machine's [0-9.]+ GiB of memory"
               generate -m @D@/layers-1-TB.gguf --rules "*=int4-g128-asym" -p hello -n 2 -t 1)
malformed_model("a chat template that matches no family" unknown-chat-template.gguf "unknown-chat-template.gguf: tokenizer.chat_template: unrecognised chat template")
malformed_case("a prompt longer than the context" "context-length-24.gguf .24 tokens.|prompt 1 is [0-9]+ tokens, which leaves no room for an answer in the context of .*context-length-24.gguf"
               generate -m @D@/context-length-24.gguf -p "a prompt that is longer than twenty four tokens once the chat template wraps it" -n 2 -t 1)
malformed_case("eval: --max-new-tokens beyond the context" "tiny.gguf: 300 new tokens per answer .--max-new-tokens. leave no room for a prompt in the model's context of 256 tokens"
               eval -m @D@/tiny.gguf --variants fp -d default --limit 1 --max-new-tokens 300 -t 1 -o @D@/eval-long)
malformed_case("eval: a prompt longer than the context" "context-length-24.gguf: prompt '[^']+' is [0-9]+ tokens as a chat turn"
               eval -m @D@/context-length-24.gguf --variants fp -d default --limit 1 --max-new-tokens 4 -t 1 -o @D@/eval-short-context)
# qsafe's own quantized layers (a qsafe-quantized copy of the tiny model, its blob of blk.0.attn_q broken)
malformed_model("qsafe layer: NaN scales" qsafe-nan-scales.gguf "qsafe-nan-scales.gguf: .*blk.0.attn_q.weight.*(non-finite|NaN|nan)")
malformed_model("qsafe layer: 2^31 x 2^31 shape" qsafe-huge-shape.gguf "qsafe-huge-shape.gguf: .*blk.0.attn_q.weight.*implausible shape 2147483648x2147483648")
malformed_model("qsafe layer: bad magic" qsafe-bad-blob-magic.gguf "qsafe-bad-blob-magic.gguf: .*blk.0.attn_q.weight.*bad magic")
# Hugging Face folders
malformed_model("config.json: num_attention_heads 0" hf-heads-0 "hf-heads-0/config.json: invalid model config: a dimension is zero")
malformed_model("config.json: num_hidden_layers -1" hf-layers-minus-1 "hf-layers-minus-1/config.json: 'num_hidden_layers' is -1, not a count")
malformed_model("config.json: a string where a count belongs" hf-hidden-size-string "hf-hidden-size-string/config.json: 'hidden_size' must be a non-negative integer, not string")
malformed_model("config.json: not JSON" hf-config-not-json "hf-config-not-json/config.json: invalid JSON: .* at line 1, column 20")
malformed_model("config.json: nested 200000 deep" hf-deep-json "hf-deep-json/config.json: JSON nested deeper than 256 levels at byte offset [0-9]+")
malformed_model("config.json: vocabulary disagrees with the embedding" hf-vocab-disagrees "hf-vocab-disagrees: tensor 'model.embed_tokens.weight': shape does not match .1000, 64.")
malformed_model("tokenizer.json: token id 5*10^7" hf-tokenizer-id-5e7 "hf-tokenizer-id-5e7/tokenizer.json: added_tokens: token '<.endoftext.>' has id 50000000")
malformed_model("safetensors: header length 2^40" st-header-size-2-40 "st-header-size-2-40/model.safetensors: header length at byte offset 0: 1099511627776 exceeds the [0-9]+ bytes after it")
malformed_model("safetensors: overlapping tensors" st-overlapping-tensors "st-overlapping-tensors/model.safetensors: tensor 'model.norm.weight': data_offsets .* overlap tensor 'lm_head.weight'")
malformed_model("safetensors: data past the end" st-data-past-end "st-data-past-end/model.safetensors: tensor 'model.norm.weight': data_offsets .* run past the end of the data section")
malformed_model("safetensors: shape and size disagree" st-shape-disagrees-with-size "st-shape-disagrees-with-size/model.safetensors: tensor 'model.norm.weight': data_offsets .* hold 256 bytes but shape .65. of F32 needs 260")
malformed_model("safetensors: unknown dtype" st-unknown-dtype "st-unknown-dtype/model.safetensors: tensor 'model.norm.weight': unknown dtype .F8_E9M9.")
malformed_model("safetensors: NaN in a weight" st-nan-weight "st-nan-weight: tensor 'model.layers.0.mlp.up_proj.weight': non-finite value .nan. at row 0, column 10")
# Datasets (qsafe judge reads any CSV / JSONL)
function(malformed_table name file expect)
    malformed_case("${name}" "${expect}" judge @D@/${file} --response-column response)
endfunction()
malformed_table("CSV: the response column missing" missing-column.csv "missing-column.csv: no column 'response' .wanted as the response column; columns: question, answer.")
malformed_table("CSV: an unterminated quote" unterminated-quote.csv "unterminated-quote.csv:3: unexpected character after a closing quote")
malformed_table("CSV: invalid UTF-8" invalid-utf8.csv "invalid-utf8.csv:2:3: invalid UTF-8 .byte 0xc3.")
malformed_table("CSV: two columns of one name" duplicate-column.csv "duplicate-column.csv:1: column 'response' appears twice in the header .columns 2 and 3.")
malformed_table("CSV: an empty file" empty.csv "empty.csv:1: empty file .no header row.")
malformed_table("JSONL: a broken line in the middle" broken-line.jsonl "broken-line.jsonl:2:22: invalid JSON")
malformed_table("JSONL: a field nested 300000 deep" deep.jsonl "deep.jsonl:1: JSON nested deeper than 256 levels at byte offset [0-9]+")
# Command lines
malformed_case("a scheme name that does not parse" "unknown quantization scheme 'int9-g32-asym'"
               quantize -m @D@/tiny.gguf -r "*=int9-g32-asym" -o @D@/out.gguf -t 1)
malformed_case("a rule without a scheme (read as a scheme name)" "unknown quantization scheme 'blk.0.attn_q'"
               quantize -m @D@/tiny.gguf -r "blk.0.attn_q" -o @D@/out.gguf -t 1)
malformed_case("more outlier columns than the tensor has" "tensor 'blk.0.ffn_down.weight': scheme 'int2-g32-asym.ocol512' keeps 512 outlier columns, but the tensor has 128 columns"
               quantize -m @D@/tiny.gguf -r "*=fp32,blk.0.ffn_down=int2-g32-asym+ocol512" -o @D@/out.gguf -t 1)
malformed_case("a rule glob that matches no tensor" "--rules: 'nosuch.[*]' matches no tensor of the model"
               quantize -m @D@/tiny.gguf -r "nosuch.*=int4-g32-asym" -o @D@/out.gguf -t 1)
malformed_case("rules of white space only" "--rules is empty: give at least one pattern=value"
               quantize -m @D@/tiny.gguf -r " " -o @D@/out.gguf -t 1)
malformed_case("a negative bit budget" "--target-bpw: Value -3 not in range"
               quantize -m @D@/tiny.gguf -r "*=int4-g32-asym" --target-bpw -3 -o @D@/out.gguf -t 1)
malformed_case("calibration text shorter than one window" "short.txt: calibration: the text region holds [0-9]+ tokens, fewer than one window of 64"
               quantize -m @D@/tiny.gguf -r "*=int4-g32-asym" --method gptq --calib @D@/short.txt --calib-samples 4 --calib-len 64 -o @D@/out.gguf -t 1)
# Journals of an interrupted evaluation (journal_cases.sh: cut mid-line resumes, impossible values fail)
add_test(NAME "malformed: journals cut mid-line or holding impossible values"
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/journal_cases.sh $<TARGET_FILE:qsafe_cli> ${QSAFE_MALFORMED_DIR})
set_tests_properties("malformed: journals cut mid-line or holding impossible values" PROPERTIES FIXTURES_REQUIRED malformed_inputs)
# Resource limits: generation asked for more tokens than the context holds stops at the context, says so, and
# exits 0 (the KV cache refuses to grow past the context length).
add_test(NAME "malformed: generation stops at the context length"
         COMMAND $<TARGET_FILE:qsafe_cli> generate -m ${QSAFE_MALFORMED_DIR}/context-length-24.gguf --raw -p hi -n 1000 -t 1)
set_tests_properties("malformed: generation stops at the context length" PROPERTIES FIXTURES_REQUIRED malformed_inputs
                     PASS_REGULAR_EXPRESSION "answer 1 stopped at the model's context length 24 .prompt 2 . 22 generated tokens., before --max-tokens 1000")
