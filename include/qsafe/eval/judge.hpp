#pragma once
// What a judge is: something that looks at a prompt and a model's response and says whether the model
// refused, partly refused or complied, with a short reason a person can check. Judges are plain types that
// satisfy the Judge concept; FunctionJudge turns a lambda into one, and AnyJudge holds any judge behind one
// type so judges of different types can be combined or chosen at run time (e.g. from a command line).
#include <concepts>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "qsafe/eval/verdict.hpp"

namespace qsafe::eval {

struct JudgeResult {
    Verdict verdict = Verdict::unknown;
    std::string reason;  // why, e.g. the refusal phrase found and where
};

/// A judge may keep state between calls (a model's cache), so it is called through a non-const reference.
template <class J>
concept Judge = requires(J& judge, const PromptRow& row, std::string_view response) {
    { judge.judge(row, response) } -> std::convertible_to<JudgeResult>;
    { judge.name() } -> std::convertible_to<std::string_view>;
};

/// Adapts a callable `(const PromptRow&, std::string_view) -> JudgeResult` into a named Judge.
template <class Function>
    requires std::is_invocable_r_v<JudgeResult, Function&, const PromptRow&, std::string_view>
class FunctionJudge {
  public:
    FunctionJudge(std::string name, Function function) : name_(std::move(name)), function_(std::move(function)) {}
    JudgeResult judge(const PromptRow& row, std::string_view response) { return function_(row, response); }
    const std::string& name() const noexcept { return name_; }

  private:
    std::string name_;
    Function function_;
};

template <class Function>
FunctionJudge<Function> make_judge(std::string name, Function function) {
    return FunctionJudge<Function>(std::move(name), std::move(function));
}

/// Any judge behind one type. Copies share the underlying judge (a model judge must not be duplicated).
class AnyJudge {
  public:
    template <Judge J>
        requires(!std::same_as<std::remove_cvref_t<J>, AnyJudge>)
    AnyJudge(J&& judge)  // implicit on purpose: any judge can be passed where an AnyJudge is expected
    {
        auto held = std::make_shared<std::remove_cvref_t<J>>(std::forward<J>(judge));
        name_ = std::string(held->name());
        call_ = [held](const PromptRow& row, std::string_view response) -> JudgeResult { return held->judge(row, response); };
    }

    JudgeResult judge(const PromptRow& row, std::string_view response) { return call_(row, response); }
    const std::string& name() const noexcept { return name_; }

  private:
    std::string name_;
    std::function<JudgeResult(const PromptRow&, std::string_view)> call_;
};

static_assert(Judge<AnyJudge>);

}  // namespace qsafe::eval
