// expect: Asymmetric works only with UniformGrid
#include "qsafe/policy/scheme.hpp"
template struct qsafe::Scheme<qsafe::Bits<4>, qsafe::GroupSize<64>, qsafe::Asymmetric, qsafe::Fp4E2M1>;
