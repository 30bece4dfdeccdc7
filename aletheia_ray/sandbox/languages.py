"""How each language is written to disk, compiled (once per submission) and run."""
from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from typing import Optional

from aletheia_ray.sandbox.isolation import resolve_binary

CPP_MAIN = re.compile(r"\bint\s+main\s*\([^)]*\)\s*\{")
# Prepended to C++ test programs. A global whose constructor runs before any other static
# initializer of the program (init_priority 101, defined first) takes the host's token from stdin
# and points stdin at /dev/null, so code running before main cannot read it; an automatic object
# in main() prints it from its destructor, which runs when main returns, not on exit()/_exit/
# abort. Names carry a per-submission random suffix (@) so the program cannot refer to them.
CPP_GUARD = """#include <cstdio>
#include <fcntl.h>
#include <unistd.h>
#include <iostream>
static char aletheia_token_@[128];
struct AletheiaTokenReader_@ {
  AletheiaTokenReader_@() {
    if (!std::fgets(aletheia_token_@, sizeof aletheia_token_@, stdin)) aletheia_token_@[0] = 0;
    for (char *c = aletheia_token_@; *c; ++c) if (*c == '\\n') *c = 0;
    int null_fd = open("/dev/null", O_RDONLY);
    dup2(null_fd, 0); close(null_fd); std::clearerr(stdin);
  }
};
static AletheiaTokenReader_@ aletheia_token_reader_@ __attribute__((init_priority(101)));
struct AletheiaEndGuard_@ {
  ~AletheiaEndGuard_@() { std::cout.flush(); std::fflush(stdout); std::printf("\\n%s\\n", aletheia_token_@);
    std::fflush(stdout); }
};
#line 1
"""
# Pre-main code that could run before the token reader (explicit early priorities, init arrays).
CPP_EARLY_INIT = re.compile(r"(init_priority|constructor)\s*\(\s*\d+|\.(pre)?init_array")
JAVA_LAUNCHER = "AletheiaLauncher.java"
JVM_FLAGS = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData", "-Xshare:auto"]


class SourceError(ValueError):
    """The submission cannot be turned into a program (reported as CE with this message)."""


@dataclass(frozen=True)
class Language:
    name: str
    source_name: str
    compiled: bool  # a real compiler runs (C++/Java); Python gets a syntax check
    address_space_limit: bool  # False: the JVM reserves far more address space than it uses
    memory_overhead_mb: int  # added to the cgroup memory cap (JVM metaspace, code cache...)

    def source(self, code: str, test_program: Optional[str]) -> str:
        if test_program is None:
            return code
        program = code + "\n" + test_program
        if self.name != "cpp":
            return program
        if CPP_EARLY_INIT.search(program):
            raise SourceError("test programs may not run code before the token reader "
                              "(init_priority/constructor priorities, .init_array sections)")
        match = CPP_MAIN.search(test_program)
        if match:
            at = len(code) + 1 + match.end()
        else:
            match = CPP_MAIN.search(program)
            if not match:
                raise SourceError("test program has no `int main(...) {` to guard")
            at = match.end()
        suffix = secrets.token_hex(6)
        guard = f" AletheiaEndGuard_{suffix} aletheia_end_guard_{suffix};"
        return CPP_GUARD.replace("@", suffix) + program[:at] + guard + program[at:]

    def compile_argv(self, prog: str, harness: str, test_program: bool,
                     memory_mb: int) -> list[str]:
        src = os.path.join(prog, self.source_name)
        if self.name == "python":
            check = "import sys; compile(open(sys.argv[1], 'rb').read(), sys.argv[1], 'exec')"
            return [resolve_binary("python3"), "-I", "-B", "-c", check, src]
        if self.name == "cpp":
            return [resolve_binary("g++"), "-std=c++17", "-O2", "-pipe", "-o",
                    os.path.join(prog, "main"), src]
        files = [src] + ([os.path.join(harness, JAVA_LAUNCHER)] if test_program else [])
        return [resolve_binary("javac"), f"-J-Xmx{min(memory_mb, 768)}m",
                *[f"-J{flag}" for flag in JVM_FLAGS], "-encoding", "UTF-8", "-nowarn",
                "-d", prog, *files]

    def run_argv(self, prog: str, harness: str, style: str, memory_mb: int) -> list[str]:
        """``style``: stdio | program | call."""
        if self.name == "python":
            py = [resolve_binary("python3"), "-I", "-B"]
            src = os.path.join(prog, self.source_name)
            if style == "program":
                return py + [os.path.join(harness, "py_program.py"), src]
            if style == "call":
                return py + [os.path.join(harness, "py_call.py"), src]
            return py + [src]
        if self.name == "cpp":
            return [os.path.join(prog, "main")]
        main_class = "AletheiaLauncher" if style == "program" else "Main"
        return [resolve_binary("java"), f"-Xmx{memory_mb}m", "-Xss64m", *JVM_FLAGS, "-ea",
                "-cp", prog, main_class]


LANGUAGES = {
    "python": Language("python", "main.py", False, True, 0),
    "cpp": Language("cpp", "main.cpp", True, True, 0),
    "java": Language("java", "Main.java", True, False, 512),
}
ALIASES = {"python3": "python", "py": "python", "c++": "cpp", "cpp17": "cpp", "java17": "java"}


def language(name: str) -> Language:
    key = ALIASES.get(name.lower(), name.lower()) if isinstance(name, str) else name
    if key not in LANGUAGES:
        raise ValueError(f"language: unknown {name!r} (known: {', '.join(LANGUAGES)})")
    return LANGUAGES[key]
