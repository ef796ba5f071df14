"""aezoo's first-party dataset sources in foreign formats, registered through entry points
only (see aezoo's pyproject.toml), exactly like a third party's: ``wds:`` WebDataset tar
shards (``shards``, read by ``shardio``) and ``hf:`` Hugging Face datasets (``hf``).
``sources`` holds their descriptors; a loader is imported when its dataset is loaded.
"""
