"""The schema of a composed config: types, ranges and choices of every key a user sets, checked in one
pass before any data or model is loaded (`validate.validate_config`), and the check of the command line
before Hydra starts (`preflight`).

One module per idea:

- `fields`: the value types (strict, each with a message naming what the key allows) and the base
  models of a config group and of a `_target_` node;
- `model`, `method`, `data`, `lightning`, `optimizer`, `evaluation`: the schema of each config group;
- `schema`: the whole config of `train.py` and of `evaluate.py`, with the rules that span groups;
- `resolve`: the config as plain values, resolved key by key;
- `messages`: one line per pydantic error, `<key>=<value> <what it allows>`;
- `validate`: the one pass (schema, hardware, the method registry's keys) and `InvalidConfig`;
- `preflight`: the command line composed and validated before Hydra creates anything.

Choices come from the code that implements them (the method registry, the decoders, the normalisers,
the SSVD/SVFT option tuples), so the schema never drifts from what the code accepts. Free-form groups
stay free where their owner checks them: `model.s2t_config` is ESPnet's, and extra Lightning
arguments (`+trainer.profiler=simple`, `+callbacks.model_checkpoint.every_n_train_steps=10`) are
checked against the signature of the class they go to. The accelerator, device count, strategy and
precision are checked against the machine, and against each other, by `training/hardware.py` in the
same pass (`trainer.accelerator` & co. are typed `Any` here).
"""
