"""Secrets in the config file: `${ENV_NAME}` references and `secret_file:`-style keys.

- `${NAME}` inside any text value is replaced by the environment variable NAME (`$${` writes a
  literal `${`). A reference to an unset variable is a problem.
- `secret_file: PATH` / `password_file: PATH` read the secret from a file, such as a Docker or
  systemd credential, without its trailing newline. A relative PATH is taken from the config
  file's directory.

A secret that cannot be read (an unset variable, a missing file) is not an error by itself:
`resolve_secrets` hands it back as a `MissingSecret`, and the loader decides whether the
command at hand needs it (`run` needs the AMI secret; `crm list` needs none).

The schema keeps secrets in pydantic `SecretStr` fields, which print as '**********'.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .errors import KeyPath, ProblemLog
from .files import MAX_SECRET_BYTES, FileRefused, read_text_file
from .yaml_lines import KeyLines

SECRET_KEYS = frozenset({"secret", "password", "webhook_url", "client_secret"})
"""Keys holding a secret; each may instead be given as `<key>_file`."""

@dataclass(frozen=True)
class MissingSecret:
    """A secret of the file that could not be read: where, and why."""

    path: KeyPath
    message: str

    @property
    def part(self) -> KeyPath:
        """The section that uses the secret, e.g. ("asterisk", "ari")."""
        return self.path[:-1]


_LINE_BREAK = re.compile(r"[\r\n]")


def _is_secret(path: KeyPath) -> bool:
    return bool(path) and str(path[-1]).removesuffix("_file") in SECRET_KEYS


_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def resolve_secrets(data: Any, environ: Mapping[str, str], base_dir: Path,
                    lines: KeyLines, log: ProblemLog) -> tuple[Any, list[MissingSecret]]:
    """`data` with `${NAME}` references replaced and `*_file` keys read, and the secrets that
    could not be read; other problems go to `log`.

    A reference that cannot be resolved stays as written, and an unreadable file gives an empty
    secret, so that each mistake is reported once."""
    resolver = _Resolver(environ, base_dir, lines, log)
    return resolver.value(data, ()), resolver.missing


class _Resolver:
    def __init__(self, environ: Mapping[str, str], base_dir: Path, lines: KeyLines, log: ProblemLog) -> None:
        self._environ = environ
        self._base_dir = base_dir
        self._lines = lines
        self._log = log
        self.missing: list[MissingSecret] = []

    def value(self, value: Any, path: KeyPath) -> Any:
        if isinstance(value, dict):
            return self._mapping(value, path)
        if isinstance(value, list):
            return [self.value(item, (*path, index)) for index, item in enumerate(value)]
        if isinstance(value, str):
            return self._expand(value, path)
        return value

    def _mapping(self, mapping: dict[str, Any], path: KeyPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in mapping.items():
            key_path = (*path, key)
            secret_key = key.removesuffix("_file")
            if secret_key == key or secret_key not in SECRET_KEYS:
                result[key] = self.value(value, key_path)
            elif secret_key in mapping:
                self._log.add(key_path, f"give {secret_key} or {key}, not both")
            else:
                result[secret_key] = self._read_secret_file(self.value(value, key_path), key_path)
                self._lines.set((*path, secret_key), self._lines.line_of(key_path))
        return result

    def _expand(self, text: str, path: KeyPath) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name is None:  # "$${"
                return "${"
            if not _ENV_NAME.fullmatch(name):
                self._log.add(path, f"not an environment variable name: ${{{name}}}")
            elif name not in self._environ:
                self._problem(path, f"environment variable {name} is not set")
            else:
                return self._environ[name]
            return match.group(0)

        expanded = _REFERENCE.sub(replace, text)
        if _is_secret(path) and _LINE_BREAK.search(expanded):
            # Written into an AMI or HTTP header, a line break would end it and add another.
            self._log.add(path, "a secret cannot contain a line break (CR or LF)")
        elif _is_secret(path) and not expanded and text == expanded:
            self._problem(path, "a secret cannot be empty")
        elif _is_secret(path) and not expanded:
            self._problem(path, f"is empty: {text} names a variable set to nothing")
        return expanded

    def _problem(self, path: KeyPath, message: str) -> None:
        """A secret that cannot be read is handed back to the loader; any other value's
        problem is an error at once."""
        if _is_secret(path):
            self.missing.append(MissingSecret(path, message))
        else:
            self._log.add(path, message)

    def _read_secret_file(self, file_name: Any, path: KeyPath) -> str:
        if not isinstance(file_name, str) or not file_name:
            self._log.add(path, "must be the path of a file holding the secret")
            return ""
        file = self._base_dir / file_name
        try:
            secret = read_text_file(file, MAX_SECRET_BYTES).rstrip("\r\n")
        except FileRefused as exc:
            self._problem(path, f"cannot read secret file {file}: {exc}")
            return ""
        if not secret:
            self._problem(path, f"secret file {file} is empty")
        elif _LINE_BREAK.search(secret):
            self._log.add(path, f"secret file {file}: a secret cannot contain a line break (CR or LF) "
                                "except one at the end")
        return secret
