/* Internal to src/io: the two halves of loading a checkpoint, split so the
 * fuzzer and tests can run the metadata checks without building a network. */
#ifndef PASM_IO_CHECKPOINT_INTERNAL_H
#define PASM_IO_CHECKPOINT_INTERNAL_H

#include "pasm/io.h"

/* Fills meta from a parsed file: the pasm metadata when format is "pasm"
 * (checked against conv1.weight and fc.weight), otherwise inferred from the
 * tensors with opts for what tensors cannot tell. meta is overwritten; on
 * failure it is left empty. opts may be NULL. */
pasm_status pasm_checkpoint_read_meta(const pasm_safetensors *st, const pasm_load_options *opts,
                                      pasm_model_meta *meta);

/* Copies every state tensor of net from the file, checking presence, dtype,
 * shape and finiteness, and that the file holds nothing else. */
pasm_status pasm_checkpoint_fill_net(const pasm_safetensors *st, pasm_net *net);

#endif
