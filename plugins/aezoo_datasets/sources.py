"""The descriptors of ``wds:`` and ``hf:`` (torch-free, like aezoo.data.sources)."""

from __future__ import annotations

from aezoo.data.source import DatasetSource

wds = DatasetSource(
    name="wds",
    description="WebDataset tar shards: wds:PATH, wds:shards-{000..009}.tar, file:// or "
                "http(s):// URLs; streamed",
    license="yours",
    load="aezoo_datasets.shards:load_shards",
    takes_path=True,
)

hf = DatasetSource(
    name="hf",
    description="a Hugging Face datasets dataset: hf:PATH_OR_NAME[:SPLIT] (save_to_disk "
                "folder, parquet, or a Hub name); needs aezoo[hf]",
    license="the dataset's",
    load="aezoo_datasets.hf:load_hf",
    takes_path=True,
)
