"""The text tier: namespaces of passages in one SQLite database, searched by BM25 (FTS5)
and by dense vectors, the two rankings fused; each passage's sentences are embedded too,
so evidence is ranked sentence by sentence without embedding at question time.

Every write is one transaction, so a process killed mid-way leaves the database as it was;
a document is keyed by its content hash, so remembering it again costs nothing."""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import sqlite_utils
from pydantic import BaseModel, ValidationError

from mempipe.chunking import sentence_spans
from mempipe.config import home
from mempipe.database import connect, write
from mempipe.errors import UsageError
from mempipe.item import Item
from mempipe.memory import query as q
from mempipe.memory.embed import Embedder, default_embedder
from mempipe.memory.kv import metadata

Span = tuple[int, int]
CANDIDATES = 50  # how deep each ranking goes before fusion
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class Passage(BaseModel):
    """One remembered passage: its text, where it came from, and how often it was read."""

    id: int
    namespace: str
    source: str
    span: Span
    text: str
    episode: int  # its event's number within its document, in reading order
    created: str
    recalls: int = 0
    last_recall: str | None = None
    score: float | None = None

    def item(self) -> Item:
        return Item(text=self.text, source=self.source, span=self.span, score=self.score,
                    meta={"namespace": self.namespace, "passage": self.id,
                          "episode": self.episode})


class Exported(BaseModel):
    """One line of `mempipe memory export`: a passage with its document's identity."""

    source: str
    hash: str
    span: Span
    text: str
    episode: int
    created: str
    recalls: int = 0
    last_recall: str | None = None


def _m001_initial(db: sqlite_utils.Database) -> None:
    db["documents"].create({"id": int, "namespace": str, "source": str, "hash": str,
                            "chars": int, "created": str}, pk="id")
    db["documents"].create_index(["namespace", "hash"], unique=True)
    db["passages"].create({"id": int, "namespace": str, "document": int, "source": str,
                           "start": int, "end": int, "text": str, "episode": int,
                           "created": str, "recalls": int, "last_recall": str}, pk="id",
                          foreign_keys=[("document", "documents", "id")],
                          defaults={"recalls": 0})
    db["passages"].create_index(["namespace"])
    db["passages"].create_index(["document"])
    db["passages"].enable_fts(["text"], tokenize="porter", create_triggers=True)
    db["vectors"].create({"passage": int, "vector": bytes}, pk="passage",
                         foreign_keys=[("passage", "passages", "id")])


def _m002_kv(db: sqlite_utils.Database) -> None:
    """Tier 2: one blob of keys and values per passage (memory/kv.py), with the weights
    and setting it was computed with and a checksum of its bytes."""
    db["kv"].create({"passage": int, "model": str, "setting": str, "tokens": int,
                     "bytes": int, "checksum": str, "blob": bytes}, pk="passage",
                    foreign_keys=[("passage", "passages", "id")])


def _m003_sentences(db: sqlite_utils.Database) -> None:
    """Each passage's sentences (offsets in its document, like the passage's) and their
    vectors: a small model answers from a few sentences, ranked when a question comes."""
    db["sentences"].create({"id": int, "passage": int, "start": int, "end": int,
                            "vector": bytes}, pk="id",
                           foreign_keys=[("passage", "passages", "id")])
    db["sentences"].create_index(["passage"])


MIGRATIONS = [_m001_initial, _m002_kv, _m003_sentences]  # append, never edit


def check_namespace(name: str) -> str:
    if not _NAMESPACE.fullmatch(name):
        raise UsageError(f"bad namespace name {name!r}: use letters, digits, _ . - "
                         "(at most 64, starting with a letter or digit)")
    return name


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Store:
    """The memory database (`memory.db` in the mempipe home, or ":memory:" for a run's
    scratch). Safe to share between threads and between processes."""

    def __init__(self, path: Path | str | None = None, embedder: Embedder | None = None):
        self.path = path if path is not None else home() / "memory.db"
        self.db = connect(self.path, MIGRATIONS)
        self.embedder = embedder or default_embedder()
        self._vectors: dict[str, tuple[tuple, np.ndarray, np.ndarray]] = {}

    # -- writing -------------------------------------------------------------------------

    def has(self, namespace: str, text: str) -> bool:
        """Whether this exact text is already remembered in `namespace`."""
        row = self.db.execute("select 1 from documents where namespace = ? and hash = ?",
                              [namespace, content_hash(text)]).fetchone()
        return row is not None

    def add(self, namespace: str, document: Item, spans: list[Span],
            versions: bool = True) -> int:
        """Remember `document` cut at `spans` (offsets into its text), replacing an older
        version from the same file unless `versions` is off (a run's scratch keeps a file
        beside its summary); returns the passages added (0 when already known)."""
        check_namespace(namespace)
        if not spans or self.has(namespace, document.text):
            return 0
        digest, created = content_hash(document.text), now()
        base = document.span[0] if document.span else 0
        passages = [Exported(source=document.source, hash=digest, span=(base + a, base + b),
                             text=document.text[a:b], episode=i, created=created)
                    for i, (a, b) in enumerate(spans)]
        vectors = self._embed(passages)  # before taking the lock
        with write(self.db):
            if self.has(namespace, document.text):  # another process was quicker
                return 0
            if versions and _is_file(document.source):
                self._delete("documents.source = ? and documents.namespace = ?",
                             [document.source, namespace])
            added = self._insert(namespace, len(document.text), passages, vectors)
        self.index_sentences(namespace)
        return added

    def _embed(self, passages: list[Exported]) -> np.ndarray:
        return self.embedder.embed([p.text for p in passages]).astype(np.float16)

    def _insert(self, namespace: str, chars: int, passages: list[Exported],
                vectors: np.ndarray) -> int:
        """One document (the passages' own) with its passages and their vectors; call
        inside a write transaction. Returns the passages written."""
        first = passages[0]
        doc = self.db.execute(
            "insert into documents (namespace, source, hash, chars, created) "
            "values (?, ?, ?, ?, ?)",
            [namespace, first.source, first.hash, chars, first.created]).lastrowid
        for p, vector in zip(passages, vectors):
            pid = self.db.execute(
                "insert into passages (namespace, document, source, start, end, text, "
                "episode, created, recalls, last_recall) values (?,?,?,?,?,?,?,?,?,?)",
                [namespace, doc, p.source, *p.span, p.text, p.episode, p.created,
                 p.recalls, p.last_recall]).lastrowid
            self.db.execute("insert into vectors (passage, vector) values (?, ?)",
                            [pid, vector.tobytes()])
        return len(passages)

    def _hashes(self, namespace: str) -> set[str]:
        return {r[0] for r in self.db.execute(
            "select hash from documents where namespace = ?", [namespace]).fetchall()}

    def forget(self, namespace: str) -> int:
        """Delete a namespace; returns the passages deleted."""
        self.existing(namespace)
        with write(self.db):
            return self._delete("documents.namespace = ?", [namespace])

    def _delete(self, where: str, params: list) -> int:
        """Delete the documents matching `where`, with their passages and vectors."""
        docs = f"select id from documents where {where}"
        passages = f"select id from passages where document in ({docs})"
        count = self.db.execute(f"select count(*) from ({passages})", params).fetchone()[0]
        self.db.execute(f"delete from vectors where passage in ({passages})", params)
        self.db.execute(f"delete from sentences where passage in ({passages})", params)
        self.db.execute(f"delete from kv where passage in ({passages})", params)
        self.db.execute(f"delete from passages where document in ({docs})", params)
        self.db.execute(f"delete from documents where {where}", params)
        return count

    # -- key/value memories (tier 2) ----------------------------------------------------

    def without_kv(self, namespace: str, model: str, setting: str) -> list[Passage]:
        """The passages of `namespace` with no memory from `model` in `setting`."""
        self.existing(namespace)
        rows = self.db.query(
            "select p.* from passages p left join kv on kv.passage = p.id "
            "and kv.model = ? and kv.setting = ? where p.namespace = ? and kv.passage is null "
            "order by p.id", [model, setting, namespace])
        return [_passage(r) for r in rows]

    def add_kv(self, blobs: dict[int, bytes]) -> int:
        """Store each passage's memory blob (replacing an older one), all in one
        transaction; passages deleted meanwhile are skipped. Returns the blobs stored."""
        rows = []
        for passage, blob in blobs.items():
            meta = metadata(blob)
            rows.append([passage, meta["model"], meta["setting"], int(meta["tokens"]),
                         len(blob), hashlib.sha256(blob).hexdigest(), blob])
        with write(self.db):
            alive = {r[0] for r in self.db.execute(
                f"select id from passages where id in ({','.join('?' * len(rows))})",
                [r[0] for r in rows]).fetchall()} if rows else set()
            for row in rows:
                if row[0] in alive:
                    self.db.execute("insert or replace into kv (passage, model, setting, "
                                    "tokens, bytes, checksum, blob) values (?,?,?,?,?,?,?)",
                                    row)
        return len(alive)

    def kv_held(self, namespaces: list[str]) -> dict[int, tuple[int, str, str]]:
        """Each passage of `namespaces` with a memory: its bytes, weights and setting."""
        rows = self.db.execute(
            "select kv.passage, kv.bytes, kv.model, kv.setting from kv join passages p on "
            f"p.id = kv.passage where p.namespace in ({','.join('?' * len(namespaces))})",
            namespaces).fetchall()
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def drop_kv(self, ids: list[int]) -> int:
        """Delete the memories of passages `ids` (their text stays), in one transaction;
        returns the memories deleted."""
        if not ids:
            return 0
        with write(self.db):
            return self.db.execute(f"delete from kv where passage in "
                                   f"({','.join('?' * len(ids))})", ids).rowcount

    def kv(self, ids: list[int]) -> tuple[dict[int, bytes], list[int]]:
        """The stored memory blobs of passages `ids` whose bytes match their checksum,
        and the ids whose blob is corrupt."""
        if not ids:
            return {}, []
        rows = self.db.execute(
            f"select passage, checksum, blob from kv where passage in "
            f"({','.join('?' * len(ids))})", ids).fetchall()
        good, corrupt = {}, []
        for passage, checksum, blob in rows:
            if hashlib.sha256(blob).hexdigest() == checksum:
                good[passage] = blob
            else:
                corrupt.append(passage)
        return good, corrupt

    # -- reading -------------------------------------------------------------------------

    def search(self, namespaces: list[str], query: str, k: int = 5) -> list[Passage]:
        """The `k` passages that best answer `query`: BM25 and dense rankings fused; a
        passage holding a quoted phrase of the query word for word comes first."""
        for name in namespaces:
            check_namespace(name)
        exact = self.holding(namespaces, q.exact(query))
        fused = q.fuse([self._bm25(namespaces, q.fts_any(query)),
                        self._dense(namespaces, query)])
        ranked = exact + sorted((i for i in fused if i not in exact), key=lambda i: -fused[i])
        chosen = ranked[:k]
        passages = {p.id: p for p in self._passages(chosen)}
        found = [passages[i].model_copy(update={"score": round(fused.get(i, 0.0), 5)})
                 for i in chosen]
        self._count_recalls(chosen)
        return found

    def holding(self, namespaces: list[str], phrases: list[str]) -> list[int]:
        """The passages that hold any of `phrases` word for word (punctuation, case and
        line breaks aside), by id; nothing is counted as recalled."""
        found = [i for phrase in phrases for i in self._bm25(namespaces, q.fts_phrase(phrase))]
        return list(dict.fromkeys(found))

    def passages(self, namespace: str) -> list[Passage]:
        """Every passage of `namespace` in the order it was remembered."""
        rows = self.db.query("select * from passages where namespace = ? order by id",
                             [namespace])
        return [_passage(r) for r in rows]

    def neighbours(self, passage: Passage, before: int, after: int) -> list[Passage]:
        """`passage` with the events just before and after it in its document, in order."""
        rows = self.db.query(
            "select * from passages where document = (select document from passages "
            "where id = ?) and episode between ? and ? order by episode",
            [passage.id, passage.episode - before, passage.episode + after])
        return [_passage(r) for r in rows]

    def existing(self, names: str) -> list[str]:
        """The namespaces named in `names` (comma-separated), each of which must exist."""
        wanted = [n.strip() for n in names.split(",") if n.strip()]
        known = self.namespaces()
        for name in wanted or [names]:
            if name not in known:
                raise UsageError(f"no such namespace: {name}")
        return wanted

    def namespaces(self) -> list[str]:
        return [r[0] for r in self.db.execute(
            "select distinct namespace from documents order by namespace").fetchall()]

    def stats(self, namespace: str | None = None) -> list[dict]:
        """Per namespace: documents, passages, characters, recalls, last written; and for
        tier 2, the passages with a memory, its tokens and bytes, bytes per token for the
        text and the memories (over the passages that have one), and the settings."""
        where, params = ("where d.namespace = ?", [namespace]) if namespace else ("", [])
        if namespace:
            self.existing(namespace)
        rows = list(self.db.query(
            "select d.namespace, count(distinct d.id) as documents, count(p.id) as passages, "
            "sum(length(p.text)) as chars, sum(p.recalls) as recalls, "
            "count(kv.passage) as kv_passages, coalesce(sum(kv.tokens), 0) as kv_tokens, "
            "coalesce(sum(kv.bytes), 0) as kv_bytes, "
            "sum(case when kv.passage is null then 0 else length(cast(p.text as blob)) end) "
            "as kv_text_bytes, group_concat(distinct kv.setting) as kv_settings, "
            "max(d.created) as updated from documents d join passages p on p.document = d.id "
            f"left join kv on kv.passage = p.id {where} group by d.namespace "
            "order by d.namespace", params))
        for row in rows:
            tokens, text_bytes = row.pop("kv_tokens"), row.pop("kv_text_bytes") or 0
            row["text_bytes_per_token"] = round(text_bytes / tokens, 1) if tokens else None
            row["kv_bytes_per_token"] = round(row["kv_bytes"] / tokens, 1) if tokens else None
            row["updated"] = row.pop("updated")
        return rows

    def _bm25(self, namespaces: list[str], expression: str | None) -> list[int]:
        if expression is None:
            return []
        marks = ",".join("?" * len(namespaces))
        rows = self.db.execute(
            "select passages.id from passages_fts join passages on passages.id = "
            f"passages_fts.rowid where passages_fts match ? and passages.namespace in ({marks})"
            " order by passages_fts.rank limit ?", [expression, *namespaces, CANDIDATES])
        return [r[0] for r in rows.fetchall()]

    def _dense(self, namespaces: list[str], query: str) -> list[int]:
        ids, matrix = self._matrix(namespaces)
        if not len(ids):
            return []
        scores = matrix @ self.embedder.embed([query])[0]
        top = np.argpartition(-scores, min(CANDIDATES, len(ids) - 1))[:CANDIDATES]
        return [int(ids[i]) for i in top[np.argsort(-scores[top])]]

    def _matrix(self, namespaces: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Ids and unit vectors of the namespaces' passages, cached until they change."""
        parts = [self._namespace_matrix(n) for n in namespaces]
        if not parts:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        if len(parts) == 1:
            return parts[0]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def version(self, namespace: str) -> tuple[tuple[int, str], ...]:
        """Changes whenever the namespace's passages do: they come and go with their
        document, never edited, so the documents' ids and content hashes name what it
        holds (a count and a newest id would not: SQLite reuses a deleted newest id)."""
        return tuple(self.db.execute("select id, hash from documents where namespace = ? "
                                     "order by id", [namespace]).fetchall())

    def _namespace_matrix(self, namespace: str) -> tuple[np.ndarray, np.ndarray]:
        version = self.version(namespace)
        cached = self._vectors.get(namespace)
        if cached is None or cached[0] != version:
            rows = self.db.execute(
                "select v.passage, v.vector from vectors v join passages p on p.id = v.passage"
                " where p.namespace = ? order by v.passage", [namespace]).fetchall()
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float16)
            cached = (version, ids, matrix.reshape(len(rows), -1).astype(np.float32))
            self._vectors[namespace] = cached
        return cached[1], cached[2]

    # -- sentences -----------------------------------------------------------------------

    def index_sentences(self, namespace: str) -> int:
        """Embed and keep the sentences of the namespace's passages that have none yet;
        returns the sentences added. Remembering calls it; for a namespace remembered before
        sentences were kept (or whose indexing was killed), `ask` embeds the sentences it
        ranks when it ranks them, and remembering anything into it completes it."""
        rows = self.db.execute(
            "select p.id, p.start, p.text from passages p where p.namespace = ? and not "
            "exists (select 1 from sentences s where s.passage = p.id) order by p.id",
            [namespace]).fetchall()
        found = [(pid, start + a, start + b, said) for pid, start, text in rows
                 for a, b in sentence_spans(text)
                 if (said := " ".join(text[a:b].split()))]
        if not found:
            return 0
        vectors = self.embedder.embed([f[3] for f in found]).astype(np.float16)
        with write(self.db):
            alive = {r[0] for r in self.db.execute(
                "select p.id from passages p where p.namespace = ? and not exists "
                "(select 1 from sentences s where s.passage = p.id)", [namespace])}
            kept = [(pid, a, b, v.tobytes()) for (pid, a, b, _), v in zip(found, vectors)
                    if pid in alive]
            self.db.conn.executemany("insert into sentences (passage, start, end, vector) "
                                     "values (?, ?, ?, ?)", kept)
        return len(kept)

    def sentence_vectors(self, passages: list[Passage]) -> dict[tuple[str, int, int],
                                                                   np.ndarray]:
        """The stored vectors of the sentences of `passages`, by (source, start, end)."""
        if not passages:
            return {}
        sources = {p.id: p.source for p in passages}
        rows = self.db.execute(
            f"select passage, start, end, vector from sentences where passage in "
            f"({','.join('?' * len(sources))})", list(sources)).fetchall()
        return {(sources[pid], a, b): np.frombuffer(v, dtype=np.float16).astype(np.float32)
                for pid, a, b, v in rows}

    def _passages(self, ids: list[int]) -> list[Passage]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        return [_passage(r) for r in self.db.query(
            f"select * from passages where id in ({marks})", ids)]

    def _count_recalls(self, ids: list[int]) -> None:
        """Every recall counts, except within `uncounted()`: placement (promotion between
        tiers) reads these."""
        if not ids or not _COUNTING.get():
            return
        marks = ",".join("?" * len(ids))
        with write(self.db):
            self.db.execute(f"update passages set recalls = recalls + 1, last_recall = ? "
                            f"where id in ({marks})", [now(), *ids])

    # -- moving namespaces between databases ---------------------------------------------

    def export(self, namespace: str) -> Iterator[str]:
        """The namespace as JSON lines, one passage each, in the order remembered."""
        self.existing(namespace)
        rows = self.db.query(
            "select d.source, d.hash, p.start, p.end, p.text, p.episode, p.created, "
            "p.recalls, p.last_recall from passages p join documents d on d.id = p.document "
            "where p.namespace = ? order by p.id", [namespace])
        for r in rows:
            yield Exported(span=(r.pop("start"), r.pop("end")), **r).model_dump_json()

    def import_(self, namespace: str, lines: Iterable[str]) -> int:
        """Add exported passages to `namespace`, all or nothing; a malformed line is named
        and nothing from this import is kept. Returns the passages added."""
        check_namespace(namespace)
        records: list[Exported] = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                records.append(Exported.model_validate_json(line))
            except ValidationError as exc:
                problem = exc.errors()[0]
                where = ".".join(str(p) for p in problem["loc"])
                raise UsageError(f"import: line {number}: {problem['msg']}"
                                 + (f" ({where})" if where else "")) from None
        known = self._hashes(namespace)
        documents: dict[str, list[Exported]] = {}
        for record in records:
            if record.hash not in known:  # already there: not embedded again
                documents.setdefault(record.hash, []).append(record)
        vectors = iter(self._embed([r for rs in documents.values() for r in rs]))
        added = 0
        with write(self.db):
            known = self._hashes(namespace)  # again: another process may have been quicker
            for digest, passages in documents.items():
                mine = [next(vectors) for _ in passages]
                if digest not in known:
                    chars = max(p.span[1] for p in passages)
                    added += self._insert(namespace, chars, passages, mine)
        self.index_sentences(namespace)
        return added


_COUNTING: contextvars.ContextVar[bool] = contextvars.ContextVar("counting", default=True)


@contextlib.contextmanager
def uncounted() -> Iterator[None]:
    """Recalls made inside (training asking the namespace about itself) are not counted
    as reads: only users' questions make a passage hot."""
    token = _COUNTING.set(False)
    try:
        yield
    finally:
        _COUNTING.reset(token)


def _passage(row: dict) -> Passage:
    return Passage(id=row["id"], namespace=row["namespace"], source=row["source"],
                   span=(row["start"], row["end"]), text=row["text"], episode=row["episode"],
                   created=row["created"], recalls=row["recalls"] or 0,
                   last_recall=row["last_recall"])


def _is_file(source: str) -> bool:
    """Whether `source` names a file, whose newer version replaces the older."""
    return source not in ("-", "") and not source.startswith("<")


def with_neighbours(found: list[tuple[Store, Passage]]) -> list[tuple[Store, list[Passage]]]:
    """Each recalled passage with the passages just before and after it in its
    document, best first; a passage already inside an earlier group adds none."""
    groups, seen = [], set()
    for store, passage in found:
        if (passage.namespace, passage.id) in seen:
            continue
        around = store.neighbours(passage, 1, 1)
        seen.update((p.namespace, p.id) for p in around)
        groups.append((store, around))
    return groups
