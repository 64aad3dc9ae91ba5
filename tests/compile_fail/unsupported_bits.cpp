// expect: BitWidth
#include "qsafe/policy/scheme.hpp"
template struct qsafe::Scheme<qsafe::Bits<7>, qsafe::GroupSize<64>>;
