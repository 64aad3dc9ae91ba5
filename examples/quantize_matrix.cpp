// Quantize one matrix with a scheme named on the command line and print its size, bits per weight and
// error. The matrix is random (Gaussian or heavy-tailed) or a tensor loaded from a GGUF file.
//   quantize_matrix --scheme int4-g128-asym --rows 4096 --cols 4096
//   quantize_matrix --scheme int3-g128-asym+sparse0.5% --gguf model.gguf --tensor blk.0.ffn_down.weight --clip
#include <cstdio>
#include <random>
#include <string>

#include <CLI/CLI.hpp>

#include <qsafe/qsafe.hpp>
// The named schemes come from the object library qsafe_builtin_schemes, compiled once for all of qsafe's
// programs. A program of your own gets them by including <qsafe/registry/builtin_schemes.hpp> in exactly one
// of its translation units.

int main(int argc, char** argv) {
    CLI::App app{"Quantize a matrix with a qsafe scheme and report size and error"};
    std::string scheme = "int4-g128-asym", gguf_path, tensor_name, distribution = "gaussian";
    std::size_t rows = 1024, cols = 1024;
    bool clip = false, list = false;
    app.add_option("--scheme", scheme, "scheme name (see --list)");
    app.add_option("--rows", rows, "rows of the random matrix");
    app.add_option("--cols", cols, "columns of the random matrix");
    app.add_option("--distribution", distribution, "gaussian | heavy-tailed")->check(CLI::IsMember({"gaussian", "heavy-tailed"}));
    app.add_option("--gguf", gguf_path, "take the matrix from this GGUF file instead")->check(CLI::ExistingFile);
    app.add_option("--tensor", tensor_name, "tensor name in the GGUF file");
    app.add_flag("--clip", clip, "MSE-optimal clipping search per group");
    app.add_flag("--list", list, "list the registered schemes and exit");
    CLI11_PARSE(app, argc, argv);

    try {
        if (list) {
            for (const auto& s : qsafe::list_schemes())
                std::printf("%-28s %6.3f bits/weight  %s\n", s.name.c_str(), s.bits_per_weight, s.description.c_str());
            return 0;
        }
        qsafe::RowMatrixF w;
        if (!gguf_path.empty()) {
            if (tensor_name.empty()) throw qsafe::config_error("--gguf needs --tensor");
            const auto file = qsafe::gguf::File::open(gguf_path);
            const auto& info = file.tensor(tensor_name);
            const std::vector<float> values = file.tensor_to_f32(info);
            w = Eigen::Map<const qsafe::RowMatrixF>(values.data(), static_cast<Eigen::Index>(info.rows()),
                                                    static_cast<Eigen::Index>(info.row_length()));
        } else {
            w.resize(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
            std::mt19937_64 rng(42);
            std::normal_distribution<float> gauss;
            std::student_t_distribution<float> heavy(3.0f);
            for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = distribution == "gaussian" ? gauss(rng) : heavy(rng);
        }
        qsafe::QuantizeOptions opt;
        opt.clip_search = clip;
        opt.tensor_name = tensor_name;
        const auto layer = qsafe::quantize_by_name(scheme, w, opt);
        const auto err = qsafe::error_metrics(w, layer->dequantize());
        std::printf("matrix      %zu x %zu (%s)\n", layer->rows(), layer->cols(),
                    gguf_path.empty() ? distribution.c_str() : tensor_name.c_str());
        std::printf("scheme      %s\n", layer->scheme_name().c_str());
        std::printf("size        %zu bytes (fp32: %zu bytes)\n", layer->storage_bytes(), layer->rows() * layer->cols() * 4);
        std::printf("bits/weight %.4f\n", layer->bits_per_weight());
        std::printf("rmse        %.6g\nsqnr        %.2f dB\nmax |error| %.6g\n", err.rmse, err.sqnr_db, err.max_abs_error);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "quantize_matrix: %s\n", e.what());
        return 1;
    }
}
