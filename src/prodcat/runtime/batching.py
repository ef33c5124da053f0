"""Length-grouped training batches: padding is spent only where lengths differ.

`group_by_length: true` in a Trainer's settings (the labelers' `train`, the namer's `train`) makes
its training batches out of rows of similar length (Hugging Face's `LengthGroupedSampler` order:
a random permutation cut into mega-batches of 50 optimizer steps, each sorted by length, the
longest batch first so that running out of memory shows at once). Two things differ from
transformers' own sampler, and are why this module exists:

- the length is the real one of the row: source plus target tokens for the seq2seq labelers
  (`ExampleDataset.lengths`; transformers would take `input_ids` alone, the short description,
  while the label path is most of a ByT5 row's bytes), the tokenised chat for the namer (the
  Arrow column's list lengths: no Python list of every token);
- the order is a function of the seed and the epoch alone (transformers draws it from the global
  RNG at the moment the epoch starts), so a resumed run replays the interrupted epoch's order and
  skips exactly the batches it had trained on, and every data-parallel process draws the same
  order (accelerate then deals batch i to process i mod N).

`length_grouped(trainer_class)` is the Trainer (or SFTTrainer) with that sampler.
"""

from __future__ import annotations

GROUP_BY_LENGTH = "group_by_length"  # the value of TrainingArguments.train_sampling_strategy


class SeededLengthGroupedSampler:
    """Row positions grouped by length, in an order drawn from `seed + epoch` (see the module).

    `group_size`: rows per optimizer step over all processes (batch x accumulation x processes),
    so that the order, and the rows of each optimizer step, do not depend on how many processes
    share a step."""

    def __init__(self, lengths, group_size: int, seed: int):
        self.lengths = [int(n) for n in lengths]
        self.group_size = int(group_size)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        import torch
        from transformers.trainer_pt_utils import get_length_grouped_indices

        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.group_size, generator=generator))


def row_lengths(dataset) -> list[int]:
    """Each row's length: the dataset's own `lengths` when it states them (prodcat's
    ExampleDataset), else the lengths of its `input_ids` column (a datasets.Dataset, read from
    Arrow), else of each row's input_ids."""
    lengths = getattr(dataset, "lengths", None)
    if lengths is not None:
        return list(lengths)
    data = getattr(dataset, "data", None)  # a datasets.Dataset's Arrow table
    if data is not None and "input_ids" in getattr(dataset, "column_names", ()):
        import pyarrow.compute as pc

        column = data.column("input_ids")
        indices = getattr(dataset, "_indices", None)  # a selected/shuffled view maps rows to the table
        if indices is not None:
            column = column.take(indices.column(0))
        return pc.list_value_length(column).to_pylist()
    return [len(row["input_ids"]) for row in dataset]


def length_grouped(trainer_class):
    """`trainer_class` whose training sampler, under train_sampling_strategy group_by_length, is a
    SeededLengthGroupedSampler over `row_lengths` (every other strategy: the class's own)."""

    class LengthGrouped(trainer_class):
        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if self.args.train_sampling_strategy != GROUP_BY_LENGTH or dataset is None:
                return super()._get_train_sampler(train_dataset)
            args = self.args
            seed = args.data_seed if args.data_seed is not None else args.seed
            group = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
            return SeededLengthGroupedSampler(row_lengths(dataset), group, seed)

    LengthGrouped.__name__ = LengthGrouped.__qualname__ = f"LengthGrouped{trainer_class.__name__}"
    return LengthGrouped
