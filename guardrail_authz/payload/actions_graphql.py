"""GraphQL actions: one per top-level field of the chosen operation, within shape limits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from graphql import GraphQLError, parse
from graphql.language import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionNode,
)

from guardrail_authz.payload.actions_common import ActionError, unique

MAX_BATCH = 100  # operations in one batched POST (a JSON array)


@dataclass(frozen=True, slots=True)
class GraphQLLimits:
    """Shape limits on the chosen operation, counted with its fragments expanded."""

    max_depth: int = 10
    max_aliases: int = 30
    max_fields: int = 500  # "complexity": selected fields in total after fragment expansion
    max_length: int = 100_000  # characters of the document
    max_tokens: int = 20_000  # lexical tokens, comments included

    def __post_init__(self) -> None:
        if min(self.max_depth, self.max_aliases, self.max_fields) < 0:
            raise ValueError("GraphQL limits must not be negative")
        if self.max_length < 1 or self.max_tokens < 1:
            raise ValueError("GraphQL size limits must be positive")


def graphql_actions(
    document: str, operation_name: str | None, limits: GraphQLLimits
) -> tuple[str, ...]:
    """graphql:<operation type>:<field> for each top-level field of the chosen operation."""
    if not isinstance(document, str) or not document.strip():
        raise ActionError("graphql_invalid", "a GraphQL document is required")
    if len(document) > limits.max_length:
        raise ActionError("graphql_too_large", "GraphQL document is too long")
    doc = _parse(document, limits)
    operation, fragments = _definitions(doc, operation_name)
    kind = operation.operation.value
    return unique(f"graphql:{kind}:{name}" for name in _root_fields(operation, fragments, limits))


def graphql_request(
    method: str, query: Mapping[str, str], body: object, limits: GraphQLLimits
) -> tuple[str, ...]:
    """Actions of a GraphQL-over-HTTP request: GET ?query=, POST JSON (or a batch array)."""
    verb = method.upper()
    if verb in ("GET", "HEAD"):
        document = query.get("query")
        if not isinstance(document, str):
            raise ActionError("graphql_invalid", "GET request without a query parameter")
        return graphql_actions(document, query.get("operationName") or None, limits)
    if verb != "POST":
        raise ActionError("graphql_invalid", "GraphQL requests are GET or POST")
    if isinstance(body, str):  # application/graphql: the body is the document
        return graphql_actions(body, query.get("operationName") or None, limits)
    if isinstance(body, list):
        if not body:
            raise ActionError("graphql_invalid", "empty GraphQL batch")
        if len(body) > MAX_BATCH:
            raise ActionError("graphql_too_large", "GraphQL batch has too many operations")
        return unique(action for item in body for action in _post_actions(item, limits))
    return _post_actions(body, limits)


def _post_actions(body: object, limits: GraphQLLimits) -> tuple[str, ...]:
    if not isinstance(body, dict):
        raise ActionError("graphql_invalid", "GraphQL POST body must be a JSON object")
    document = body.get("query")
    if not isinstance(document, str):
        raise ActionError("graphql_invalid", "GraphQL POST body without a query string")
    name = body.get("operationName")
    if name is not None and not isinstance(name, str):
        raise ActionError("graphql_invalid", "operationName must be a string")
    for key in ("variables", "extensions"):
        if not isinstance(body.get(key), dict | None):
            raise ActionError("graphql_invalid", f"{key} must be a JSON object")
    return graphql_actions(document, name or None, limits)


def _parse(document: str, limits: GraphQLLimits) -> DocumentNode:
    try:
        return parse(document, no_location=True, max_tokens=limits.max_tokens)
    except RecursionError:
        pass  # older graphql-core: leave the except block before raising our own error
    except GraphQLError as err:
        if "nested too deeply" in err.message:
            raise ActionError("graphql_too_deep", "GraphQL document is nested too deeply") from None
        if "contains more than" in err.message:
            raise ActionError("graphql_too_large", "GraphQL document has too many tokens") from None
        raise ActionError("graphql_syntax", "GraphQL document does not parse") from None
    raise ActionError("graphql_too_deep", "GraphQL document is nested too deeply")


def _definitions(
    doc: DocumentNode, operation_name: str | None
) -> tuple[OperationDefinitionNode, dict[str, FragmentDefinitionNode]]:
    """The operation to run and the fragments by name; anything ambiguous is refused."""
    operations: list[OperationDefinitionNode] = []
    fragments: dict[str, FragmentDefinitionNode] = {}
    for definition in doc.definitions:
        if isinstance(definition, OperationDefinitionNode):
            operations.append(definition)
        elif isinstance(definition, FragmentDefinitionNode):
            if definition.name.value in fragments:
                raise ActionError("graphql_invalid", "fragment defined twice")
            fragments[definition.name.value] = definition
        else:
            raise ActionError("graphql_invalid", "type system definitions are not executable")
    if operation_name is not None:
        chosen = [
            op for op in operations if op.name is not None and op.name.value == operation_name
        ]
        if len(chosen) != 1:
            raise ActionError("graphql_operation", "operationName does not name one operation")
        return chosen[0], fragments
    if len(operations) != 1:
        msg = "several operations and no operationName" if operations else "no operation"
        raise ActionError("graphql_operation", msg)
    return operations[0], fragments


def _root_fields(
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    limits: GraphQLLimits,
) -> list[str]:
    """Top-level field names, checking depth, aliases and field count over the expansion.

    Iterative and in document order; a fragment already being expanded on the current path
    is a cycle. Visits are capped too, so fragments spread twice in a chain (each expanding
    to nothing) cannot make the walk exponential.
    """
    budget = 4 * limits.max_fields + 1000
    fields = aliases = visits = 0
    names: list[str] = []
    stack: list[tuple[SelectionNode, int, frozenset[str]]] = [
        (s, 1, frozenset()) for s in reversed(operation.selection_set.selections)
    ]
    while stack:
        node, depth, chain = stack.pop()
        visits += 1
        if visits > budget:
            raise ActionError("graphql_too_complex", "GraphQL operation selects too much")
        children: tuple[SelectionNode, ...] = ()
        if isinstance(node, FieldNode):
            fields += 1
            if fields > limits.max_fields:
                raise ActionError(
                    "graphql_too_complex", "GraphQL operation selects too many fields"
                )
            if depth > limits.max_depth:
                raise ActionError("graphql_too_deep", "GraphQL operation is nested too deeply")
            if node.alias is not None:
                aliases += 1
                if aliases > limits.max_aliases:
                    raise ActionError(
                        "graphql_too_many_aliases", "GraphQL operation has too many aliases"
                    )
            if depth == 1 and node.name.value != "__typename":
                names.append(node.name.value)
            if node.selection_set is not None:
                children, depth = tuple(node.selection_set.selections), depth + 1
        elif isinstance(node, InlineFragmentNode):
            children = tuple(node.selection_set.selections)
        elif isinstance(node, FragmentSpreadNode):
            name = node.name.value
            if name in chain:
                raise ActionError("graphql_invalid", "fragment spreads form a cycle")
            fragment = fragments.get(name)
            if fragment is None:
                raise ActionError("graphql_invalid", "spread of an undefined fragment")
            children, chain = tuple(fragment.selection_set.selections), chain | {name}
        stack.extend((child, depth, chain) for child in reversed(children))
    return names
