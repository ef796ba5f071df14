"""The Hugging Face Hub, through ``huggingface_hub`` (the optional extra ``aezoo[hub]``).

``hf://ORG/REPO[@REVISION]`` names a model repo (a revision: a branch, tag or commit).
Pulls go through the Hub's own cache, so ``HF_HOME``, ``HF_ENDPOINT``, ``HF_TOKEN`` and
``HF_HUB_OFFLINE`` work as for every Hub library, and a pulled model loads with no
network afterwards. Only safetensors weights and the card are ever downloaded: a repo
holding only pickles (``.bin``, ``.pt``) is refused. Every failure of the network or the
Hub is one line naming what to do; nothing waits without a timeout.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aezoo.errors import AezooError, UsageError, summary
from aezoo.weightset import CARD_FILE, WEIGHTS_FILE

SCHEME = "hf://"
_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")
TIMEOUT_S = 10.0  # per request; a server that stalls fails after this (AEZOO_HUB_TIMEOUT)
INSTALL = "pip install 'aezoo[hub]'"
# Where the client's network errors come from (they are not OSErrors).
_NETWORK_MODULES = ("httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3")


class HubError(AezooError):
    """The Hub (or the network to it) could not give what was asked."""


@dataclass(frozen=True)
class HubRef:
    repo: str
    revision: str | None = None

    def __str__(self) -> str:
        return f"{SCHEME}{self.repo}" + (f"@{self.revision}" if self.revision else "")


def is_hub_ref(text: str) -> bool:
    return text.startswith(SCHEME)


def parse(text: str) -> HubRef:
    """``hf://ORG/REPO[@REVISION]`` -> HubRef, or a one-line UsageError."""
    if not is_hub_ref(text):
        raise UsageError(f"'{text[:200]}' is not a Hub reference",
                         "write hf://ORG/REPO or hf://ORG/REPO@REVISION")
    repo, _, revision = text[len(SCHEME):].partition("@")
    if not _REPO.fullmatch(repo) or ".." in repo or (revision and (
            not _REVISION.fullmatch(revision) or ".." in revision)):
        raise UsageError(f"'{text[:200]}' is not a valid Hub reference",
                         "write hf://ORG/REPO or hf://ORG/REPO@REVISION (letters, digits, "
                         "'-', '_', '.')")
    return HubRef(repo, revision or None)


def timeout() -> float:
    raw = os.environ.get("AEZOO_HUB_TIMEOUT", "")
    try:
        value = float(raw) if raw else TIMEOUT_S
    except ValueError:
        raise UsageError(f"AEZOO_HUB_TIMEOUT={raw[:50]} is not a number of seconds",
                         "set it to e.g. 10, or unset it") from None
    return value if value > 0 else TIMEOUT_S


def _client():  # type: ignore[no-untyped-def]
    try:
        import huggingface_hub
    except ImportError:
        raise UsageError("the Hugging Face Hub needs huggingface_hub, which is not installed",
                         INSTALL) from None
    return huggingface_hub


def _errors():  # type: ignore[no-untyped-def]
    try:
        from huggingface_hub import errors
    except ImportError:  # huggingface_hub < 0.24 kept them in utils
        from huggingface_hub import utils as errors  # type: ignore[no-redef]
    return errors


@contextmanager
def hub_errors(ref: HubRef, action: str) -> Iterator[None]:
    """The client's exceptions as one-line aezoo errors naming the fix."""
    _client()
    errors = _errors()
    try:
        yield
    except errors.RevisionNotFoundError:
        raise HubError(f"{ref.repo} has no revision '{ref.revision}'",
                       f"check the branch, tag or commit on {endpoint()}/{ref.repo}") from None
    except errors.GatedRepoError:
        raise HubError(f"{ref} is gated: accept its terms on {endpoint()}/{ref.repo}",
                       "then set HF_TOKEN (or run `hf auth login`)") from None
    except errors.RepositoryNotFoundError:
        raise HubError(f"{ref} was not found, or is private and no token was sent",
                       "check the name; for a private repo set HF_TOKEN "
                       "(or run `hf auth login`)") from None
    except (errors.OfflineModeIsEnabled, errors.LocalEntryNotFoundError) as exc:
        # LocalEntryNotFoundError is a subclass of EntryNotFoundError: caught before it
        if isinstance(exc, errors.OfflineModeIsEnabled) or _offline():
            raise HubError(f"cannot {action} {ref}: HF_HUB_OFFLINE is set and it is not in "
                           "the cache", "unset HF_HUB_OFFLINE and pull it once with network") \
                from None
        raise HubError(f"cannot {action} {ref}: the Hub is unreachable and it is not in the "
                       "cache", f"check the network (or HF_ENDPOINT={endpoint()}) and "
                       "retry") from None
    except errors.EntryNotFoundError as exc:
        raise HubError(f"{ref} has no {_entry(exc)} (aezoo reads only safetensors weights, "
                       "never .bin/.pt pickles)", "push it with `aezoo push RUN "
                       f"{ref}`, or pick another repo") from None
    except errors.HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            raise HubError(f"the Hub refused to {action} {ref} (HTTP {status})",
                           "set HF_TOKEN to a token with write access to it") from None
        why = summary(exc, with_type=False, limit=200)
        raise HubError(f"the Hub could not {action} {ref} ({why})",
                       "retry later; check HF_ENDPOINT and the repo") from None
    except Exception as exc:  # network errors: OSErrors, and httpx's (which are not)
        plain = isinstance(exc, OSError | ValueError)
        if isinstance(exc, FileNotFoundError | PermissionError) or not (
                plain or _is_network(exc)):
            raise
        raise HubError(f"cannot {action} {ref} ({summary(exc, with_type=not plain, limit=200)})",
                       f"check the network and HF_ENDPOINT ({endpoint()}), then retry") \
            from None


def _entry(exc: Exception) -> str:
    match = re.search(r"(\S+\.(?:safetensors|json))", str(exc))
    return match.group(1).rsplit("/", 1)[-1] if match else WEIGHTS_FILE


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")


def _within(seconds: float, call: Callable[[], object]) -> bool:
    """Run ``call`` in a daemon thread; False when it has not returned after ``seconds``
    (its exception, if any, is raised here)."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, daemon=True, name="aezoo-hub-probe")
    worker.start()
    worker.join(seconds)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return not worker.is_alive()


def _fetch(ref: HubRef, filename: str, wait: float) -> Path:
    """One file of the repo through the Hub's cache. The client retries a server that does
    not answer for minutes; one bounded probe first tells a stalled server from a slow
    download, and then only the cache is used."""
    hub = _client()

    def download(local_only: bool = False) -> Path:
        return Path(hub.hf_hub_download(ref.repo, filename, revision=ref.revision,
                                        etag_timeout=wait, library_name="aezoo",
                                        local_files_only=local_only))

    if not _offline():
        url = hub.hf_hub_url(ref.repo, filename, revision=ref.revision, endpoint=endpoint())
        try:
            answered = _within(3 * wait + 1, lambda: hub.get_hf_file_metadata(url, timeout=wait))
        except Exception as exc:  # a network error (httpx's too): the cache may still serve
            if not (isinstance(exc, OSError | ValueError) or _is_network(exc)):
                raise
            answered = not _is_timeout(exc)
        if not answered:
            try:
                return download(local_only=True)
            except _errors().LocalEntryNotFoundError:
                raise HubError(f"the Hub at {endpoint()} did not answer within {wait:g} s and "
                               f"{ref} is not in the cache", "check the network and "
                               "HF_ENDPOINT, or raise AEZOO_HUB_TIMEOUT") from None
    return download()


def _is_network(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in _NETWORK_MODULES


def _is_timeout(exc: BaseException) -> bool:
    return "timeout" in type(exc).__name__.lower() or "timed out" in str(exc).lower()


def pull(ref: HubRef) -> Path:
    """The repo's ``model.safetensors`` in the Hub's cache (downloaded if needed); its
    ``config.json`` card beside it when the repo has one."""
    wait = timeout()
    with hub_errors(ref, "pull"):
        path = _fetch(ref, WEIGHTS_FILE, wait)
        try:
            _fetch(ref, CARD_FILE, wait)
        except _errors().EntryNotFoundError:
            pass  # a bare safetensors repo: the spec in its header is enough to load
    return path


def push(folder: Path, ref: HubRef, *, private: bool = False, message: str = "") -> str:
    """Upload ``folder`` (written by ``aezoo.sharing.write_folder``) to ``ref``: the repo is
    created if needed (``private``), and the branch ``ref.revision`` too. The commit URL."""
    hub = _client()
    api = hub.HfApi(endpoint=endpoint(), library_name="aezoo")
    with hub_errors(ref, "push to"):
        api.create_repo(ref.repo, private=private, exist_ok=True)
        if ref.revision:
            api.create_branch(ref.repo, branch=ref.revision, exist_ok=True)
        info = api.upload_folder(repo_id=ref.repo, folder_path=str(folder),
                                 revision=ref.revision,
                                 commit_message=message or "Upload with aezoo push")
    return str(getattr(info, "commit_url", "") or f"{endpoint()}/{ref.repo}")
