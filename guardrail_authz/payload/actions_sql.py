"""SQL actions: statement kinds, the tables each writes or reads, and risk flags (sqlglot)."""

from __future__ import annotations

import logging
import re
from functools import lru_cache

from sqlglot import Token, TokenType, exp
from sqlglot.dialects.dialect import Dialect, Dialects

from guardrail_authz.payload.actions_common import ActionError, unique

MAX_SQL_BYTES = 64 * 1024
# sqlglot's parser spends about 20 Python frames per bracket level; stay far from the limit.
MAX_SQL_NESTING = 24
SQL_DIALECTS = frozenset(d.value for d in Dialects if d.value)

DANGEROUS = frozenset({"drop", "truncate", "alter", "grant", "revoke"})
FLAG_DANGEROUS = "sql:flag:dangerous"
FLAG_NO_WHERE = "sql:flag:no-where"
FLAG_MULTIPLE = "sql:flag:multiple-statements"

# Statements that write, with the arguments that hold what they write (anywhere in a tree:
# PostgreSQL runs DML inside WITH, SELECT ... INTO creates a table).
_WRITERS: dict[type[exp.Expr], tuple[str, tuple[str, ...]]] = {
    exp.Insert: ("insert", ("this",)),
    exp.Update: ("update", ("this",)),
    exp.Delete: ("delete", ("this",)),  # MySQL's DELETE t1 FROM ...: "tables", see _targets
    exp.Merge: ("merge", ("this",)),
    exp.Into: ("create", ("this",)),
    exp.Create: ("create", ("this",)),
    exp.Drop: ("drop", ("this", "tables", "expressions")),
    exp.TruncateTable: ("truncate", ("this", "expressions")),
    exp.Alter: ("alter", ("this", "actions")),
    exp.Grant: ("grant", ("securable",)),
    exp.Revoke: ("revoke", ("securable",)),
    exp.Copy: ("copy", ("this",)),
    exp.LoadData: ("load", ("this",)),
}
# Other statements, by kind; every table they name is reported under that kind.
_OTHERS: dict[type[exp.Expr], str] = {
    exp.Analyze: "analyze",
    exp.Cache: "cache",
    exp.Commit: "commit",
    exp.Describe: "describe",
    exp.Execute: "execute",
    exp.Pragma: "pragma",
    exp.Rollback: "rollback",
    exp.Set: "set",
    exp.Show: "show",
    exp.Transaction: "begin",
    exp.Uncache: "uncache",
    exp.Use: "use",
}
# sqlglot parses statements it does not know as a bare Command. For the kinds above that is
# a statement it failed to read, so we refuse it rather than guess its tables.
_UNREAD_COMMANDS = frozenset(
    {"select", "with", "insert", "update", "delete", "merge", "replace", "upsert", "create"}
    | {"drop", "truncate", "alter", "grant", "revoke", "copy", "load"}
)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_OPEN = frozenset({TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE})
_CLOSE = frozenset({TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE})


class _NoStatementEcho(logging.Filter):
    """sqlglot logs the text of a statement it reads as a bare Command: client data, unredacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "unsupported syntax" not in str(record.msg)


logging.getLogger("sqlglot").addFilter(_NoStatementEcho())


def sql_actions(sql: str, dialect: str | None = None) -> tuple[str, ...]:
    """sql:<kind>:<table> per table written or read, sql:<kind> without tables, and flags."""
    if not isinstance(sql, str) or not sql.strip():
        raise ActionError("sql_invalid", "a SQL statement is required")
    if len(sql) > MAX_SQL_BYTES:
        raise ActionError("sql_too_large", "SQL text is over 64 KB")
    try:
        size = len(sql.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates: no client sent this as UTF-8
        raise ActionError("sql_invalid", "SQL text is not valid Unicode") from None
    if size > MAX_SQL_BYTES:
        raise ActionError("sql_too_large", "SQL text is over 64 KB")
    parser = _dialect(dialect)  # an unknown dialect is a policy error: ValueError
    try:
        tokens = parser.tokenize(sql)
    except Exception:  # noqa: BLE001 - any tokenizer failure on client text is a syntax error
        raise ActionError("sql_syntax", "SQL text does not tokenize") from None
    _check_nesting(tokens)
    try:
        statements = [s for s in parser.parser().parse(tokens, sql) if s is not None]
    except RecursionError:
        statements = None  # raised below, outside this handler, so the deep stack is freed
    except Exception:  # noqa: BLE001 - sqlglot raises several types on malformed input
        raise ActionError("sql_syntax", "SQL text does not parse") from None
    if statements is None:
        raise ActionError("sql_too_large", "SQL statement is nested too deeply")
    if not statements:
        raise ActionError("sql_invalid", "no SQL statement found")
    actions: list[str] = []
    flags: set[str] = set()
    for statement in statements:
        actions += _statement(statement, flags)
    if len(statements) > 1:
        flags.add(FLAG_MULTIPLE)
    ordered = [f for f in (FLAG_DANGEROUS, FLAG_NO_WHERE, FLAG_MULTIPLE) if f in flags]
    return unique(actions + ordered)


@lru_cache(maxsize=64)
def _dialect(name: str | None) -> Dialect:
    return Dialect.get_or_raise(name)


def _check_nesting(tokens: list[Token]) -> None:
    depth = 0
    for token in tokens:
        if token.token_type in _OPEN:
            depth += 1
            if depth > MAX_SQL_NESTING:
                raise ActionError("sql_too_large", "SQL statement is nested too deeply")
        elif token.token_type in _CLOSE:
            depth -= 1


def _statement(root: exp.Expr, flags: set[str]) -> list[str]:
    """Actions of one statement; adds its flags to `flags`."""
    if isinstance(root, exp.Command):
        keyword = str(root.this).lower()
        if keyword in _UNREAD_COMMANDS:
            raise ActionError("sql_syntax", "SQL statement does not parse")
        return [f"sql:{keyword if keyword.isalpha() else 'other'}"]
    if isinstance(root, exp.Query | exp.Values):
        kind = "select"
    elif type(root) in _WRITERS:
        kind = _WRITERS[type(root)][0]
    elif type(root) in _OTHERS:
        kind = _OTHERS[type(root)]
    else:  # a bare expression such as "orders" or "1 + 1" is not a statement
        raise ActionError("sql_syntax", "SQL text is not a statement")
    actions: list[str] = []
    written: set[int] = set()
    for node in root.walk(bfs=False):
        writer = _WRITERS.get(type(node))
        if writer is None:
            continue
        node_kind = writer[0]
        for table in _targets(node, writer[1]):
            written.add(id(table))
            actions.append(f"sql:{node_kind}:{_table_name(table)}")
        if node_kind in DANGEROUS:
            flags.add(FLAG_DANGEROUS)
        # (MERGE's WHEN ... THEN UPDATE has no table of its own: the ON clause filters it)
        if (
            isinstance(node, exp.Delete | exp.Update)
            and node.args.get("this") is not None
            and node.args.get("where") is None
        ):
            flags.add(FLAG_NO_WHERE)
    read_kind = kind if type(root) in _OTHERS else "select"
    for table in root.find_all(exp.Table, bfs=False):
        if id(table) not in written and not _is_cte_reference(table):
            actions.append(f"sql:{read_kind}:{_table_name(table)}")
    if not any(a.startswith(f"sql:{kind}:") for a in actions) and (kind != "select" or not actions):
        actions.append(f"sql:{kind}")
    return actions


def _targets(node: exp.Expr, args: tuple[str, ...]) -> list[exp.Table]:
    if isinstance(node, exp.Delete) and node.args.get("tables"):
        args = ("tables",)  # DELETE t1 FROM t1 JOIN t2: "this" is what it reads
    found: dict[int, exp.Table] = {}
    for arg in args:
        value = node.args.get(arg)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, exp.Expr):
                found.update((id(t), t) for t in item.find_all(exp.Table, bfs=False))
    return list(found.values())


def _table_name(table: exp.Table) -> str:
    """Lower-case catalog.schema.table; name() for a table function, ? for anything else."""
    this = table.this
    if isinstance(this, exp.Identifier):
        name = ".".join(p.lower() for p in (table.catalog, table.db, table.name) if p)
        if _CONTROL.search(name):  # a quoted identifier; actions end up in headers and logs
            raise ActionError("sql_invalid", "table name holds control characters")
        return name
    if isinstance(this, exp.Anonymous):
        return f"{this.name.lower()}()"
    if isinstance(this, exp.Func):
        return f"{this.sql_name().lower()}()"
    return "?"


def _is_cte_reference(table: exp.Table) -> bool:
    """Whether an unqualified table names a CTE visible where it stands (SQL scoping)."""
    if table.args.get("db") is not None or not isinstance(table.this, exp.Identifier):
        return False
    name = table.name.lower()
    child: exp.Expr = table
    node = table.parent
    while node is not None:
        if isinstance(node, exp.With) and isinstance(child, exp.CTE):
            ctes = node.expressions
            # Inside a CTE body only the CTEs before it are visible (all of them if RECURSIVE).
            at = next(i for i, cte in enumerate(ctes) if cte is child)
            visible = ctes if node.args.get("recursive") else ctes[:at]
            if any(cte.alias.lower() == name for cte in visible):
                return True
        else:
            with_ = node.args.get("with_") or node.args.get("with")  # renamed in sqlglot 26
            if (
                isinstance(with_, exp.With)
                and child is not with_
                and any(cte.alias.lower() == name for cte in with_.expressions)
            ):
                return True
        child, node = node, node.parent
    return False
