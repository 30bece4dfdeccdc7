"""How each language is written to disk, compiled (once per submission) and run."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Optional

from aletheia_ray.sandbox.isolation import resolve_binary

CPP_MAIN = re.compile(r"\bint\s+main\s*\([^)]*\)\s*\{")
# Prepended to C++ test programs: an automatic object in main() whose destructor prints the
# host's token. Destructors of automatic objects run when main returns, not on exit()/_exit/abort,
# so exiting before the asserts leaves the token out.
CPP_GUARD = """#include <cstdio>
#include <iostream>
#include <string>
struct AletheiaEndGuard {
  std::string token;
  AletheiaEndGuard() { std::getline(std::cin, token); }
  ~AletheiaEndGuard() { std::cout.flush(); std::fflush(stdout);
    std::printf("\\n%s\\n", token.c_str()); std::fflush(stdout); }
};
#line 1
"""
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
        match = CPP_MAIN.search(test_program)
        if match:
            at = len(code) + 1 + match.end()
        else:
            match = CPP_MAIN.search(program)
            if not match:
                raise SourceError("test program has no `int main(...) {` to guard")
            at = match.end()
        return CPP_GUARD + program[:at] + " AletheiaEndGuard aletheia_end_guard;" + program[at:]

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
