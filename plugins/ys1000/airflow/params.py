"""A run's ``conf`` checked against the params its DAG declares (the generic restore's trigger form).

Airflow validates each *declared* param against its schema when a run is created (``airflow dags
trigger --conf``, the REST API, the trigger form): a wrong type never becomes a run. What it
cannot say:

- a key the DAG does not declare is accepted and silently ignored — ``namespace_maping`` would
  restore into the original namespace — so an unknown key fails the first task, with a
  "did you mean" hint and the declared names;
- a backup id that does not exist in the repository.

``check_conf`` is the pure check (unknown keys, and each value against its param's JSON schema
again, so a conf that reached the task some other way is held to the same rules);
``check_run_conf`` is what the first task of the generic restore DAG calls before it touches
anything: it fails the task with ``AirflowFailException`` (no retries) and a message naming each
param, and checks that a given backup id exists.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Any

#: values of param ``backup`` that are not ids
NOT_AN_ID = ("", "latest", None)


class ConfError(ValueError):
    """A run's conf does not match the DAG's params; ``problems`` holds one message per param."""

    def __init__(self, problems: list[str], declared: list[str]):
        self.problems = problems
        self.declared = declared
        super().__init__("; ".join(problems))


def _schema(param: Any) -> dict:
    """The JSON schema of a declared param (an ``airflow.sdk.Param``, or a schema dict)."""
    schema = getattr(param, "schema", param)
    return dict(schema) if isinstance(schema, Mapping) else {}


def _declared(params: Any) -> dict[str, dict]:
    """name → JSON schema of a ``ParamsDict`` (its ``Param`` objects) or a plain mapping."""
    if params is None:
        return {}
    get_param = getattr(params, "get_param", None)
    return {name: _schema(get_param(name) if get_param else params[name]) for name in params}


def _show(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _type_problem(name: str, value: Any, schema: dict) -> str | None:
    """``param 'NAME': ...`` when ``value`` does not match ``schema``, else None."""
    if not schema:
        return None
    from jsonschema import Draft202012Validator, FormatChecker

    errors = sorted(
        Draft202012Validator(schema, format_checker=FormatChecker()).iter_errors(value),
        key=lambda e: list(e.absolute_path),
    )
    if not errors:
        return None
    err = errors[0]
    where = "".join(f"[{p!r}]" for p in err.absolute_path)
    expected = schema.get("type")
    if isinstance(expected, list):
        expected = " or ".join(str(t) for t in expected)
    allowed = f"; allowed: {', '.join(map(str, schema['enum']))}" if "enum" in schema else ""
    return f"param {name!r}{where}: {err.message} (got {_show(value)}; expected {expected or 'a valid value'}{allowed})"


def check_conf(conf: Mapping[str, Any] | None, params: Any) -> list[str]:
    """Problems of ``conf`` against the declared ``params`` (a ``ParamsDict`` or name → ``Param``/
    schema): unknown keys (with the closest declared name) and values that do not match their
    param's schema. Empty when the conf is fine."""
    declared = _declared(params)
    problems: list[str] = []
    if conf is None:
        return problems
    if not isinstance(conf, Mapping):
        return [f"the conf must be a JSON object of params, got {_show(conf)}"]
    for key, value in conf.items():
        if key not in declared:
            close = difflib.get_close_matches(str(key), list(declared), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(f"param {key!r} is unknown: {hint}params are {', '.join(declared)}")
            continue
        if (problem := _type_problem(key, value, declared[key])) is not None:
            problems.append(problem)
    return problems


def validate_conf(conf: Mapping[str, Any] | None, params: Any) -> None:
    """``check_conf``, raising ``ConfError`` with every problem."""
    if problems := check_conf(conf, params):
        raise ConfError(problems, list(_declared(params)))


def check_run_conf(operator: Any, context: Any) -> None:
    """For the first task of a DAG with a trigger form (the generic restore's preflight): fail
    the task, before anything is written, when the run's conf has unknown keys or wrongly typed
    values, or names a backup id the repository does not have. DAGs that declare no params
    (restore plan DAGs: their arguments come from the plan file) are not checked."""
    from airflow.sdk.exceptions import AirflowFailException

    dag = getattr(operator, "dag", None)
    params = getattr(dag, "params", None)
    if not params:
        return
    dag_run = context.get("dag_run")
    conf = getattr(dag_run, "conf", None) or {}
    try:
        validate_conf(conf, params)
    except ConfError as exc:
        raise AirflowFailException(
            f"wrong conf for {getattr(dag, 'dag_id', 'the DAG')} (nothing was restored): {exc}"
        ) from None
    _check_backup_exists(operator)


def _check_backup_exists(operator: Any) -> None:
    """Param ``backup`` given as an id: it must be a complete backup of the chosen repository."""
    from airflow.sdk.exceptions import AirflowFailException

    from ys1000.repository import BackupNotFound, IncompleteBackupError

    backup = getattr(operator, "backup", None)
    repo_name = getattr(operator, "repository_name", None)
    if backup in NOT_AN_ID or str(backup) == "latest" or not repo_name:
        return
    repo = operator.repository(str(repo_name))
    try:
        repo.manifest(str(backup))
    except BackupNotFound:
        raise AirflowFailException(
            f"param 'backup': no backup {str(backup)!r} in repository {repo_name!r} "
            f"({repo.store.describe()}); `ys1000 backups list` lists the ids, or give 'latest' "
            "and param 'plan'"
        ) from None
    except IncompleteBackupError as exc:
        raise AirflowFailException(f"param 'backup': {exc}") from None
