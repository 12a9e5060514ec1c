"""`oxcol validate` on transform/filter configs: every OTTL statement or condition that
does not parse is reported at file:line:column of the statement itself, the column moved
to the position inside the statement when the statement is on one line."""

from __future__ import annotations

import re

from helpers import run_cli

ERROR_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<column>\d+): (?P<message>.+)$")

CONFIG = """\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:4317
processors:
  transform:
    error_mode: ignore
    trace_statements:
      - context: span
        statements:
          - set(name, "ok")
          - set(attributes["x"], )
          - "set(attributes[\\"y\\"], nope)"
      - statements:
          - set(name, "no context prefix")
  filter/drop:
    metrics:
      datapoint:
        - 'attributes["a"] == '
exporters:
  debug: {}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [transform]
      exporters: [debug]
    metrics:
      receivers: [otlp]
      processors: [filter/drop]
      exporters: [debug]
"""


def errors_of(output: str, name: str):
    found = []
    for line in output.splitlines():
        match = ERROR_LINE.match(line.strip())
        if match and match["file"].endswith(name):
            found.append((int(match["line"]), int(match["column"]), match["message"]))
    return found


def test_statement_errors_point_into_the_statement(tmp_path):
    path = tmp_path / "ottl.yaml"
    path.write_text(CONFIG)
    result = run_cli(["validate", "--config", str(path)])
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    errors = errors_of(output, "ottl.yaml")
    lines = CONFIG.splitlines()

    def at(line: int, column: int) -> str:
        return lines[line - 1][column - 1 :]

    # Plain scalar: the column of the missing argument (the ")").
    empty_arg = [e for e in errors if e[0] == 13]
    assert empty_arg, output
    line, column, message = empty_arg[0]
    assert at(line, column).startswith(")"), (column, output)
    assert 'processor "transform"' in message and "at position 21" in message and "expected an argument" in message, message

    # Double-quoted scalar with escapes: the column of `nope` in the file.
    bad_path = [e for e in errors if e[0] == 14]
    assert bad_path, output
    line, column, message = bad_path[0]
    assert at(line, column).startswith("nope"), (column, output)
    assert "not a valid path" in message

    # A group without context whose context cannot be inferred: at the group.
    group = [e for e in errors if e[0] == 15]
    assert group and "infer the context" in group[0][2], output

    # Single-quoted condition of the filter processor: the end of the condition.
    cond = [e for e in errors if e[0] == 20]
    assert cond, output
    line, column, message = cond[0]
    assert 'processor "filter/drop"' in message and "expected a value" in message, message
    assert at(line, column).startswith("'"), (column, output)

    # The valid statement is not reported.
    assert not [e for e in errors if e[0] == 12], output


def test_good_ottl_config_validates(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(CONFIG.replace('set(attributes["x"], )', 'set(attributes["x"], 1)')
                    .replace("nope)", "name)")
                    .replace('set(name, "no context prefix")', 'set(span.name, "prefixed")')
                    .replace("'attributes[\"a\"] == '", "'attributes[\"a\"] == 1'"))
    result = run_cli(["validate", "--config", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
