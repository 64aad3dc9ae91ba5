// libFuzzer harness: the dataset readers (eval/csv.hpp, eval/jsonl.hpp, eval/dataset.hpp): CSV (quotes,
// embedded newlines, BOM, UTF-8 checks), JSON Lines and JSON arrays at a JSON pointer, reduced to table records
// and mapped to prompts under the column maps of every registered dataset schema (eval/dataset_registry.hpp)
// and a generic one. The first input byte picks the format: 0 CSV, 1 JSON Lines, 2 JSON array (its JSON
// pointer picked by the second byte among the schemas' pointers, "" and "/data/0").
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_common.hpp"
#include "qsafe/eval/csv.hpp"
#include "qsafe/eval/dataset.hpp"
#include "qsafe/eval/dataset_registry.hpp"
#include "qsafe/eval/jsonl.hpp"

namespace {

using namespace qsafe::eval;

void map_all(const TableRecords& raw) {
    std::vector<ColumnMap> maps;
    for (const auto& schema : dataset_schemas()) maps.push_back(schema.columns);
    maps.push_back(ColumnMap::prompt_column("prompt"));
    maps.push_back(ColumnMap::prompt_column("prompt").with_id("id").with_category("category").with_input("input").expecting(
        ExpectedFromColumn{"label", {{"harmful", Expected::harmful}, {"benign", Expected::benign}}}));
    for (const auto& map : maps) {
        try {
            qsafe_fuzz::consume(detail::map_rows("fuzz", raw, map));
        } catch (const qsafe::error&) {
        }
    }
}

std::vector<std::string> pointers() {
    std::vector<std::string> p = {"", "/data/0"};
    for (const auto& schema : dataset_schemas())
        if (!schema.json_pointer.empty()) p.push_back(schema.json_pointer);
    return p;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    const int format = data[0] % 3;
    try {
        if (format == 0) {
            const auto path = qsafe_fuzz::write_file("dataset.csv", data + 1, size - 1);
            const CsvTable table = read_csv(path);
            for (const auto& name : table.header) qsafe_fuzz::consume(table.column(name));
            map_all(records_from_csv(table));
        } else if (format == 1) {
            const auto path = qsafe_fuzz::write_file("dataset.jsonl", data + 1, size - 1);
            map_all(records_from_json(read_jsonl(path), path.string()));
        } else {
            static const std::vector<std::string> all = pointers();
            const auto path = qsafe_fuzz::write_file("dataset.json", data + 2, size - 2);
            const std::string& pointer = all[data[1] % all.size()];
            map_all(records_from_json(read_json_array(path, pointer), path.string()));
        }
    } catch (const qsafe::error& e) {
        qsafe_fuzz::rejected(e);
    }
    return 0;
}
