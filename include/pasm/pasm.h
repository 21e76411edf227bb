/* pasm: facial-expression training and Point Adversarial Self Mining.
 * Include this one header to use the whole library. */
#ifndef PASM_H
#define PASM_H
#include "pasm/core.h"
#include "pasm/ops.h"
#include "pasm/nn.h"
#include "pasm/io.h"
#include "pasm/data.h"
#include "pasm/synth.h"
#include "pasm/train.h"
#include "pasm/pasm_method.h"
#include "pasm/stats.h"
#endif
