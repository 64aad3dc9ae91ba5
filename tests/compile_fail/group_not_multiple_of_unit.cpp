// expect: must be a multiple of the packing unit
#include "qsafe/policy/scheme.hpp"
template struct qsafe::Scheme<qsafe::Bits<4>, qsafe::GroupSize<24>>;
