"""Rotation of the pseudonymisation key, and old tokens that stay resolvable.

A token is ``HMAC-SM3(key, kind:value)``, so a new key gives every subscriber
a new token, and new tokens can only be computed from raw identifiers: the
lake holds none. ``rotate_key`` therefore takes the raw input files (or any
CSV/Parquet with ``msisdn``/``imsi``/``imei`` columns, e.g. the subscriber
register) once, computes old and new token of every identifier in them, and
then **re-tokenises in place**: the lake's token columns (``subscriber``,
``imsi_token``, ``imei_token``), every warehouse table that has one, and the
forget list. Afterwards every stored table speaks the new key, so joins,
dedup at ingest and erasure work unchanged and nothing maps at read time.

What was handed out before (exports, reports, partner lists) still names old
tokens. For ``privacy.key_retention_days`` the old -> new token map is kept,
encrypted with SM4-GCM under a key derived from the *new* pseudonymisation
key (HKDF-SM3), in ``keys/map-<old>-<current>.sm4gcm``; :func:`resolve_tokens`
translates through it. The old key itself is not kept. At the next rotation
live maps are re-encrypted (and composed) under the newest key; expired maps
are deleted.

A rotation is resumable: the new key (``key.new``, mode 0600) and the map are
written first and a ``keys/rotation.pending.json`` marker names them; every
later step leaves tokens that are already new alone, so running ``rotate``
again after a crash finishes the same rotation. While the marker exists the
workspace refuses to tokenise, so no batch can mix the two keys.
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from telcoreach.errors import CryptoError, DataSourceError, PrivacyError
from telcoreach.privacy._sm import (
    describe_backends,
    sm4_gcm_decrypt,
    sm4_gcm_encrypt,
)
from telcoreach.privacy._tokens import KEY_ENV, Pseudonymiser

__all__ = [
    "PENDING_FILE",
    "key_status",
    "resolve_tokens",
    "rotate_key",
]

logger = logging.getLogger(__name__)

PENDING_FILE = "rotation.pending.json"
_KEYRING_FILE = "keyring.json"
_MAP_SUFFIX = ".sm4gcm"
_MAP_MAGIC = b"telcoreach-token-map-v1"
_MAP_SCHEMA = pa.schema([("old", pa.string()), ("new", pa.string())])
# Token columns of the lake and warehouse, and the raw columns they come from.
_TOKEN_COLUMNS = {"subscriber": "msisdn", "imsi_token": "imsi", "imei_token": "imei"}
_RAW_COLUMNS = {"msisdn": "msisdn", "imsi": "imsi", "imei": "imei"}

Progress = Callable[[str, int, int], None]


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _map_key(current: Pseudonymiser, old_fingerprint: str) -> bytes:
    """Return the 16-byte SM4 key of a token map sealed under ``current``."""
    return current.derive_key(f"token map {old_fingerprint}->{current.fingerprint}", 16)


@dataclass(frozen=True)
class _TokenMap:
    """An old -> current token map, as stored (encrypted) in ``keys/``."""

    old_fingerprint: str
    current_fingerprint: str
    retired_at: str
    expires_at: str
    tokens: int
    path: Path

    @property
    def expired(self) -> bool:
        return datetime.fromisoformat(self.expires_at) <= _now()

    def header(self) -> dict[str, Any]:
        return {
            "old_fingerprint": self.old_fingerprint,
            "current_fingerprint": self.current_fingerprint,
            "retired_at": self.retired_at,
            "expires_at": self.expires_at,
            "tokens": self.tokens,
        }


def _write_map(
    keys_dir: Path,
    current: Pseudonymiser,
    header: dict[str, Any],
    table: pa.Table,
) -> _TokenMap:
    """Encrypt and write a token map; return its description."""
    sink = io.BytesIO()
    pq.write_table(table.select(["old", "new"]).cast(_MAP_SCHEMA), sink)
    header = {
        **header,
        "current_fingerprint": current.fingerprint,
        "tokens": table.num_rows,
    }
    header_line = json.dumps(header, sort_keys=True).encode()
    key = _map_key(current, header["old_fingerprint"])
    box = sm4_gcm_encrypt(key, sink.getvalue(), _MAP_MAGIC + header_line)
    path = keys_dir / (
        f"map-{header['old_fingerprint']}-{header['current_fingerprint']}{_MAP_SUFFIX}"
    )
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(header_line + b"\n" + box)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return _read_header(path)


def _read_header(path: Path) -> _TokenMap:
    with path.open("rb") as handle:
        header = json.loads(handle.readline())
    return _TokenMap(path=path, **header)


def _read_map(token_map: _TokenMap, current: Pseudonymiser) -> pa.Table:
    """Decrypt a token map with the key it was sealed under."""
    raw = token_map.path.read_bytes()
    header_line, _, box = raw.partition(b"\n")
    key = _map_key(current, token_map.old_fingerprint)
    try:
        plain = sm4_gcm_decrypt(key, box, _MAP_MAGIC + header_line)
    except CryptoError:
        raise PrivacyError(
            f"token map {token_map.path.name} cannot be opened with key "
            f"{current.fingerprint} (it was sealed under "
            f"{token_map.current_fingerprint}): the key differs or the file was "
            "altered; restore both from the same backup"
        ) from None
    return pq.read_table(io.BytesIO(plain)).combine_chunks()


def _maps(keys_dir: Path) -> list[_TokenMap]:
    if not keys_dir.is_dir():
        return []
    return sorted(
        (_read_header(p) for p in keys_dir.glob(f"map-*{_MAP_SUFFIX}")),
        key=lambda m: m.retired_at,
    )


def _keyring(keys_dir: Path) -> dict[str, Any]:
    path = keys_dir / _KEYRING_FILE
    if not path.exists():
        return {"current": None, "retired": []}
    return json.loads(path.read_text(encoding="utf-8"))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(temporary, path)


def _identifier_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            files += sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and p.name.endswith((".csv", ".csv.gz", ".parquet"))
            )
        elif path.is_file():
            files.append(path)
        else:
            raise DataSourceError(
                f"identifier source {path} does not exist; pass the raw input "
                "files (or folders) that were ingested, or a subscriber register"
            )
    return files


def _read_identifier_columns(path: Path) -> pa.Table:
    if path.name.endswith(".parquet"):
        present = [c for c in pq.read_schema(path).names if c in _RAW_COLUMNS]
        return pq.read_table(path, columns=present)
    return pacsv.read_csv(
        path,
        convert_options=pacsv.ConvertOptions(
            include_columns=list(_RAW_COLUMNS),
            include_missing_columns=True,
            column_types=dict.fromkeys(_RAW_COLUMNS, pa.string()),
        ),
    )


def _raw_identifiers(paths: Iterable[Path]) -> dict[str, pa.Array]:
    """Return the distinct raw identifiers per kind found in ``paths``."""
    found: dict[str, list[pa.Array]] = {kind: [] for kind in _RAW_COLUMNS.values()}
    files = _identifier_files(paths)
    if not files:
        raise DataSourceError(
            "key rotation needs the raw identifiers once, to compute each "
            "subscriber's new token: pass the ingested input files (or a "
            "subscriber register) with --ids FILE_OR_FOLDER"
        )
    for path in files:
        try:
            table = _read_identifier_columns(path)
        except pa.ArrowInvalid as error:
            raise DataSourceError(
                f"{path} is not a readable CSV or Parquet file ({error}); pass "
                "only the raw input files with --ids"
            ) from None
        for column, kind in _RAW_COLUMNS.items():
            if column in table.column_names:
                values = table.column(column).cast(pa.string()).combine_chunks()
                found[kind].append(pc.unique(values.drop_null()))
    if not any(len(a) for arrays in found.values() for a in arrays):
        raise DataSourceError(
            f"no msisdn, imsi or imei column with values in {len(files)} file(s); "
            "rotation needs the raw identifiers once to compute the new tokens: "
            "pass the raw input files that were ingested or a subscriber register"
        )
    return {
        kind: pc.unique(pa.concat_arrays(arrays))
        for kind, arrays in found.items()
        if arrays
    }


def _build_map(
    identifiers: dict[str, pa.Array], old: Pseudonymiser, new: Pseudonymiser
) -> pa.Table:
    """Return the distinct (old, new) token pairs of the raw identifiers."""
    parts = []
    for kind, values in identifiers.items():
        nonblank = values.filter(pc.not_equal(pc.utf8_trim_whitespace(values), ""))
        parts.append(
            pa.table(
                {
                    "old": old.tokenise(kind, nonblank),
                    "new": new.tokenise(kind, nonblank),
                }
            )
        )
    pairs = pa.concat_tables(parts) if parts else _MAP_SCHEMA.empty_table()
    # Several spellings of one number give one pair.
    distinct = pairs.group_by(["old", "new"]).aggregate([])
    return distinct.select(["old", "new"]).cast(_MAP_SCHEMA).combine_chunks()


@dataclass
class _Remapped:
    table: pa.Table
    unmatched: dict[str, int]
    dropped_rows: int = 0


def _remap(table: pa.Table, token_map: pa.Table, drop_unmatched: bool) -> _Remapped:
    """Replace old tokens by new ones in every token column of ``table``.

    Tokens that are already new stay; an unknown token of ``subscriber``
    drops its row and an unknown IMSI/IMEI token becomes null when
    ``drop_unmatched``, else they are only counted.
    """
    unmatched: dict[str, int] = {}
    keep = None
    for column in _TOKEN_COLUMNS:
        if column not in table.column_names:
            continue
        values = table.column(column)
        if not pa.types.is_string(values.type):
            continue
        old_tokens = token_map.column("old").combine_chunks()
        new_tokens = token_map.column("new").combine_chunks()
        mapped = pc.take(new_tokens, pc.index_in(values, value_set=old_tokens))
        already_new = pc.is_in(values, value_set=new_tokens)
        replaced = pc.if_else(already_new, values, mapped)
        lost = pc.and_(pc.is_valid(values), pc.is_null(replaced))
        count = pc.sum(lost).as_py() or 0
        if count:
            unmatched[column] = count
        if column == "subscriber" and count:
            keep = pc.invert(lost)
        index = table.column_names.index(column)
        table = table.set_column(index, column, replaced.cast(values.type))
    if not drop_unmatched or keep is None:
        return _Remapped(table, unmatched)
    kept = table.filter(keep)
    return _Remapped(kept, unmatched, table.num_rows - kept.num_rows)


def _pending_path(keys_dir: Path) -> Path:
    return keys_dir / PENDING_FILE


def _load_new_key(workspace: Any, pending: dict[str, Any]) -> bytes:
    for path in (workspace.root / "key.new", workspace.key_path):
        if path.exists():
            key = bytes.fromhex(path.read_text().strip())
            if Pseudonymiser(key).fingerprint == pending["new_fingerprint"]:
                return key
    raise PrivacyError(
        f"a key rotation to key {pending['new_fingerprint']} was interrupted and "
        f"its new key is in neither {workspace.root / 'key.new'} nor "
        f"{workspace.key_path}; restore the workspace from a backup"
    )


def _start(
    workspace: Any,
    pairs: pa.Table,
    new_key: bytes,
    drop_unmatched: bool,
) -> dict[str, Any]:
    """Write the new key and the token maps, and record the pending rotation."""
    keys_dir = workspace.keys_dir
    old = workspace.pseudonymiser
    new = Pseudonymiser(new_key)
    moment = _now()
    retention = workspace.config.privacy.key_retention_days
    pending = {
        "old_fingerprint": old.fingerprint,
        "new_fingerprint": new.fingerprint,
        "started_at": _stamp(moment),
        "expires_at": _stamp(moment + timedelta(days=retention)),
        "retention_days": retention,
        "drop_unmatched": drop_unmatched,
    }
    keys_dir.mkdir(exist_ok=True)
    new_key_path = workspace.root / "key.new"
    new_key_path.unlink(missing_ok=True)
    descriptor = os.open(new_key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(new_key.hex() + "\n")
        handle.flush()
        os.fsync(handle.fileno())

    # Live maps of earlier keys: compose them with this one, seal under new key.
    for token_map in _maps(keys_dir):
        if token_map.current_fingerprint != old.fingerprint or token_map.expired:
            continue
        earlier = _read_map(token_map, old)
        as_column = earlier.rename_columns(["old", "subscriber"])
        composed = _remap(as_column, pairs, drop_unmatched=True).table
        _write_map(
            keys_dir, new, token_map.header(), composed.rename_columns(["old", "new"])
        )
    _write_map(
        keys_dir,
        new,
        {
            "old_fingerprint": old.fingerprint,
            "retired_at": pending["started_at"],
            "expires_at": pending["expires_at"],
        },
        pairs,
    )
    _write_json(_pending_path(keys_dir), pending)
    return pending


def _current_map(workspace: Any, pending: dict[str, Any], new_key: bytes) -> pa.Table:
    path = workspace.keys_dir / (
        f"map-{pending['old_fingerprint']}-{pending['new_fingerprint']}{_MAP_SUFFIX}"
    )
    return _read_map(_read_header(path), Pseudonymiser(new_key))


def _token_columns(names: Iterable[str]) -> list[str]:
    return [name for name in names if name in _TOKEN_COLUMNS]


def _check_coverage(
    workspace: Any, pairs: pa.Table, drop_unmatched: bool
) -> dict[str, int]:
    """Count tokens the map cannot translate; refuse when that would lose data."""
    from telcoreach.engine import Engine
    from telcoreach.lake import Lake

    unmatched: dict[str, int] = {}
    lake = Lake(workspace.lake)
    for record in lake.batches():
        for relative in record.files:
            path = lake.root / relative
            columns = _token_columns(pq.read_schema(path).names)
            if not columns:
                continue
            remapped = _remap(pq.read_table(path, columns=columns), pairs, False)
            for column, count in remapped.unmatched.items():
                place = f"lake:{record.kind}.{column}"
                unmatched[place] = unmatched.get(place, 0) + count
    engine = Engine(workspace)
    try:
        for name in _warehouse_tables(engine):
            table = engine.table(name)
            columns = _token_columns(table.columns)
            remapped = _remap(table.select(columns).to_pyarrow(), pairs, False)
            for column, count in remapped.unmatched.items():
                unmatched[f"warehouse:{name}.{column}"] = count
    finally:
        engine.close()
    forgotten = pa.array(sorted(workspace.forgotten_tokens()), pa.string())
    lost_erasures = _remap(pa.table({"subscriber": forgotten}), pairs, False).unmatched
    if lost_erasures:
        raise PrivacyError(
            f"{lost_erasures['subscriber']} erased subscriber(s) on the forget list "
            "have no raw identifier in the given files; after rotation their new "
            "data would no longer be dropped. Add their numbers to an --ids file "
            "and run again"
        )
    if unmatched and not drop_unmatched:
        where = ", ".join(f"{place}: {count}" for place, count in unmatched.items())
        raise PrivacyError(
            "some stored tokens have no raw identifier in the given files, so "
            f"they cannot get a new token ({where} rows); pass every raw input "
            "that was ingested with --ids, or --drop-unmatched to delete those "
            "rows (IMSI/IMEI tokens become empty)"
        )
    return unmatched


def _warehouse_tables(engine: Any) -> list[str]:
    """Return warehouse tables that hold a token column."""
    if engine.name == "spark":
        root = engine.workspace.root / "spark-warehouse"
        folders = root.iterdir() if root.is_dir() else []
        # A leading underscore marks a table still being written.
        names = [p.name for p in folders if p.is_dir() and not p.name.startswith("_")]
    else:
        # ibis_* are in-memory tables of this session, not warehouse data.
        names = [n for n in engine.con.list_tables() if not n.startswith("ibis_")]
    return [
        name for name in sorted(names) if _token_columns(engine.table(name).columns)
    ]


def _rewrite_lake(
    workspace: Any,
    pairs: pa.Table,
    pending: dict[str, Any],
    progress: Progress | None,
) -> dict[str, int]:
    from telcoreach.lake import Lake

    lake = Lake(workspace.lake)
    suffix = f".r{pending['new_fingerprint'][:8]}"
    replacements: dict[str, str | None] = {}
    erased: dict[str, tuple[int, int]] = {}
    listed = [(r, f) for r in lake.batches() for f in r.files]
    rows = 0
    dropped: dict[str, int] = {}
    for done, (record, relative) in enumerate(listed, start=1):
        path = lake.root / relative
        if progress:
            progress("re-tokenising lake", done, len(listed))
        if path.stem.endswith(suffix):
            continue  # written by this rotation before an interruption
        if not _token_columns(pq.read_schema(path).names):
            continue
        remapped = _remap(pq.read_table(path), pairs, pending["drop_unmatched"])
        target = path.with_name(f"{path.stem}{suffix}.parquet")
        if remapped.table.num_rows:
            pq.write_table(remapped.table, target)
            replacements[relative] = str(target.relative_to(lake.root))
        else:
            replacements[relative] = None
        rows += remapped.table.num_rows
        if remapped.dropped_rows:
            place = f"lake:{record.kind}"
            dropped[place] = dropped.get(place, 0) + remapped.dropped_rows
            before = erased.get(record.batch_id, (0, 0))
            erased[record.batch_id] = (before[0] + remapped.dropped_rows, before[1])
    if replacements:
        lake.replace_files(replacements, erased)
    return {"lake_files": len(replacements), "lake_rows": rows, "dropped": dropped}


def _rewrite_warehouse(
    workspace: Any, pairs: pa.Table, drop_unmatched: bool
) -> tuple[dict[str, int], dict[str, int]]:
    """Re-tokenise every warehouse table; return rows kept and rows dropped."""
    from telcoreach.engine import Engine

    engine = Engine(workspace)
    rewritten: dict[str, int] = {}
    dropped: dict[str, int] = {}
    try:
        for name in _warehouse_tables(engine):
            # Materialise first: a table cannot be replaced by a query on itself.
            remapped = _remap(engine.table(name).to_pyarrow(), pairs, drop_unmatched)
            engine.save(name, remapped.table)
            rewritten[name] = remapped.table.num_rows
            if remapped.dropped_rows:
                dropped[f"warehouse:{name}"] = remapped.dropped_rows
    finally:
        engine.close()
    return rewritten, dropped


def _rewrite_forget_list(workspace: Any, pairs: pa.Table) -> int:
    tokens = sorted(workspace.forgotten_tokens())
    if not tokens:
        return 0
    remapped = _remap(pa.table({"subscriber": pa.array(tokens)}), pairs, False)
    new_tokens = remapped.table.column("subscriber").to_pylist()
    path = workspace.forget_list_path
    temporary = path.with_suffix(".tmp")
    temporary.write_text("".join(f"{t}\n" for t in new_tokens), encoding="utf-8")
    os.replace(temporary, path)
    return len(new_tokens)


def _commit(workspace: Any, pending: dict[str, Any], new_key: bytes) -> None:
    """Make the new key current and drop what only the old key could open."""
    keys_dir = workspace.keys_dir
    new_key_path = workspace.root / "key.new"
    if new_key_path.exists():
        os.replace(new_key_path, workspace.key_path)
    (workspace.root / "key.fingerprint").write_text(pending["new_fingerprint"] + "\n")

    for token_map in _maps(keys_dir):
        stale = token_map.current_fingerprint != pending["new_fingerprint"]
        if stale or token_map.expired or pending["retention_days"] == 0:
            token_map.path.unlink()
    keyring = _keyring(keys_dir)
    current = keyring.get("current") or {
        "fingerprint": pending["old_fingerprint"],
        "created_at": None,
    }
    retired = [
        item
        for item in keyring.get("retired", [])
        if datetime.fromisoformat(item["expires_at"]) > _now()
    ]
    retired.append(
        {
            "fingerprint": current["fingerprint"],
            "created_at": current.get("created_at"),
            "retired_at": pending["started_at"],
            "expires_at": pending["expires_at"],
        }
    )
    keyring = {
        "current": {
            "fingerprint": pending["new_fingerprint"],
            "created_at": pending["started_at"],
        },
        "retired": retired,
    }
    _write_json(keys_dir / _KEYRING_FILE, keyring)
    _pending_path(keys_dir).unlink()
    workspace.__dict__.pop("pseudonymiser", None)  # cached under the old key


def rotate_key(
    workspace: Any,
    identifier_paths: list[Path],
    *,
    drop_unmatched: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Replace the workspace's pseudonymisation key and re-tokenise its data.

    Parameters
    ----------
    workspace : Workspace
        Its key must come from the key file, not ``$TELCOREACH_KEY``.
    identifier_paths : list of Path
        Raw CSV/Parquet files or folders with ``msisdn``/``imsi``/``imei``
        columns: the inputs that were ingested, or a subscriber register.
        Ignored when finishing an interrupted rotation.
    drop_unmatched : bool
        Delete rows whose subscriber token has no raw identifier in
        ``identifier_paths`` (and empty such IMSI/IMEI tokens) instead of
        refusing.
    progress : callable, optional
        ``progress(description, done, total)``.

    Returns
    -------
    dict
        Old and new key fingerprints, tokens mapped, lake files and
        warehouse tables rewritten, rows dropped (in all and per lake kind
        or warehouse table), when old tokens expire.

    Raises
    ------
    PrivacyError
        If the key comes from the environment, or tokens would be lost.
    """
    keys_dir = workspace.keys_dir
    pending_path = _pending_path(keys_dir)
    resumed = pending_path.exists()
    if resumed:
        pending = json.loads(pending_path.read_text(encoding="utf-8"))
        new_key = _load_new_key(workspace, pending)
        pairs = _current_map(workspace, pending, new_key)
        logger.warning(
            "finishing the interrupted rotation to key %s", pending["new_fingerprint"]
        )
    else:
        if os.environ.get(KEY_ENV):
            raise PrivacyError(
                f"the key comes from ${KEY_ENV}, which rotation cannot replace; "
                f"write the current key to {workspace.key_path} (mode 600), unset "
                f"${KEY_ENV} and run `telcoreach keys rotate` again"
            )
        if progress:
            progress("computing new tokens", 0, 1)
        new_key = secrets.token_bytes(32)
        identifiers = _raw_identifiers(identifier_paths)
        pairs = _build_map(identifiers, workspace.pseudonymiser, Pseudonymiser(new_key))
        # Refuse before anything is written when tokens would be lost.
        _check_coverage(workspace, pairs, drop_unmatched)
        pending = _start(workspace, pairs, new_key, drop_unmatched)

    lake_summary = _rewrite_lake(workspace, pairs, pending, progress)
    if progress:
        progress("re-tokenising warehouse", 0, 1)
    warehouse, warehouse_dropped = _rewrite_warehouse(
        workspace, pairs, pending["drop_unmatched"]
    )
    dropped = {**lake_summary.pop("dropped"), **warehouse_dropped}
    forgotten = _rewrite_forget_list(workspace, pairs)
    _commit(workspace, pending, new_key)

    summary = {
        "old_fingerprint": pending["old_fingerprint"],
        "new_fingerprint": pending["new_fingerprint"],
        "resumed": resumed,
        "tokens_mapped": pairs.num_rows,
        **lake_summary,
        "rows_dropped": sum(dropped.values()),
        "rows_dropped_by_table": dropped,
        "warehouse_tables": warehouse,
        "forget_list_tokens": forgotten,
        "retention_days": pending["retention_days"],
        "old_tokens_resolvable_until": (
            pending["expires_at"] if pending["retention_days"] else None
        ),
    }
    workspace.audit(
        action="keys rotate",
        purpose="security",
        tables=["lake", *sorted(warehouse)],
        subscribers=pairs.num_rows,
        details={k: v for k, v in summary.items() if k != "warehouse_tables"},
    )
    logger.info(
        "rotated key %s -> %s: %d tokens mapped, %d lake files rewritten",
        pending["old_fingerprint"],
        pending["new_fingerprint"],
        pairs.num_rows,
        lake_summary["lake_files"],
    )
    return summary


def resolve_tokens(workspace: Any, tokens: pa.Array | list[str]) -> pa.Array:
    """Return the current token of each old token; null where none is known.

    Old tokens resolve through the unexpired token maps of retired keys; a
    token in no map (a current one, an expired one, or not a token) is null.

    Raises
    ------
    PrivacyError
        If a value looks like a raw phone number, IMSI or IMEI: the value is
        not repeated in the message.
    """
    from telcoreach.privacy._scan import find_raw_identifiers

    if not isinstance(tokens, pa.Array):
        tokens = pa.array(tokens, pa.string())
    raw = find_raw_identifiers("\n".join(tokens.drop_null().to_pylist()))
    if raw:
        count = sum(len(found) for found in raw.values())
        raise PrivacyError(
            f"{count} value(s) look like a raw {' or '.join(sorted(raw))}, not a "
            "subscriber token; expected old tokens (24 characters of a-z2-7). "
            "To find a number's token, ingest it; raw identifiers are never resolved"
        )
    current = workspace.pseudonymiser
    resolved = pa.nulls(len(tokens), pa.string())
    for token_map in _maps(workspace.keys_dir):
        if token_map.expired or token_map.current_fingerprint != current.fingerprint:
            continue
        pairs = _read_map(token_map, current)
        found = pc.take(
            pairs.column("new").combine_chunks(),
            pc.index_in(tokens, value_set=pairs.column("old").combine_chunks()),
        )
        resolved = pc.coalesce(resolved, found)
    return resolved


def key_status(workspace: Any) -> dict[str, Any]:
    """Return the current key's fingerprint, origin and age, and retired keys."""
    keyring = _keyring(workspace.keys_dir)
    pending = _pending_path(workspace.keys_dir).exists()
    # While a rotation is pending the workspace refuses to tokenise; show the
    # recorded fingerprint instead of opening the key.
    recorded = workspace.root / "key.fingerprint"
    fingerprint = (
        recorded.read_text().strip()
        if pending and recorded.exists()
        else workspace.pseudonymiser.fingerprint
    )
    from_env = bool(os.environ.get(KEY_ENV))
    created = (keyring.get("current") or {}).get("created_at")
    if created is None and not from_env and workspace.key_path.exists():
        created = _stamp(
            datetime.fromtimestamp(workspace.key_path.stat().st_mtime, UTC)
        )
    age_days = (
        round((_now() - datetime.fromisoformat(created)).total_seconds() / 86400, 1)
        if created
        else None
    )
    maps = {m.old_fingerprint: m for m in _maps(workspace.keys_dir)}
    retired = []
    for item in keyring.get("retired", []):
        token_map = maps.get(item["fingerprint"])
        live = token_map is not None and not token_map.expired
        retired.append(
            {
                "fingerprint": item["fingerprint"],
                "retired_at": item["retired_at"],
                "resolvable_until": item["expires_at"],
                "resolvable": live,
                "tokens": token_map.tokens if token_map is not None else 0,
            }
        )
    key_file = workspace.key_path
    return {
        "fingerprint": fingerprint,
        "origin": f"${KEY_ENV}" if from_env else str(key_file),
        "key_file_mode": (
            f"{key_file.stat().st_mode & 0o777:o}" if key_file.exists() else None
        ),
        "created_at": created,
        "age_days": age_days,
        "retention_days": workspace.config.privacy.key_retention_days,
        "retired": retired,
        "rotation_pending": pending,
        "algorithms": describe_backends(),
    }
