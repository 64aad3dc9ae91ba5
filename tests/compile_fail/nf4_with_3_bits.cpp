// expect: NF4 and FP4 need Bits<4>
#include "qsafe/policy/scheme.hpp"
template struct qsafe::Scheme<qsafe::Bits<3>, qsafe::GroupSize<64>, qsafe::Symmetric, qsafe::Nf4>;
