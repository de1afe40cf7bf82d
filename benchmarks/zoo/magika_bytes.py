"""magika (Google's content-type classifier, standard_v3_3 model) on files generated here.

The model reads 2048 byte tokens: the first 1024 bytes of the file after stripping leading
whitespace and the last 1024 after stripping trailing whitespace (each read within the first /
last 4096-byte block), padded with token 256 -- magika's own feature extraction, reproduced in
`features` below from magika/magika.py. Files are made from templates with
the standard library, numpy and Pillow, 49 types (text: source code in many languages, markup, config and data
formats; binary: images, archives, compressed streams, audio, databases, serialised Python objects).
A file's label is the index of its true type in the model's output label list.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

NAME = "magika"
FAMILY = "byte-level content-type classifier (embedding MatMul + Conv1D + attention-like pooling), 214 classes"
PACKAGES = ("magika==1.0.3",)
METRIC = "magika_bytes.py:accuracy"
SIZES = {"search": 160, "test": 160, "calib": 48}
SIZES_SMALL = {"search": 32, "test": 32, "calib": 16}
SEED = 20240611
MODEL_DIR = ("models", "standard_v3_3")


def accuracy(outputs: list[np.ndarray], labels: np.ndarray | None) -> float:
    """Top-1 accuracy (%) of the content type against the type the file was generated as."""
    scores = np.asarray(outputs[0])
    return 100.0 * float(np.mean(scores.argmax(axis=1) == np.asarray(labels).reshape(-1)))


# -- magika's feature extraction (magika 1.0.3, Magika._extract_features_from_seekable) ---------------

def features(content: bytes, beg_size: int, end_size: int, padding_token: int, block_size: int) -> list[int]:
    """The model input for one file: beg ints then end ints, as magika builds them."""
    to_read = min(block_size, len(content))
    beg = content[:to_read].lstrip()[:beg_size]
    beg_ints = list(beg) + [padding_token] * (beg_size - len(beg))
    end = content[len(content) - to_read:].rstrip()
    end = end[len(end) - end_size:] if end_size < len(end) else end
    end_ints = [padding_token] * (end_size - len(end)) + list(end)
    return beg_ints + end_ints


# -- file generators ------------------------------------------------------------------------------------

WORDS = ("alpha beta gamma delta value count index total result buffer item node user order price name size "
         "path file data record entry table field score level state event token group batch model layer weight "
         "input output config option cache queue stream parser client server request response handler report "
         "summary window color image frame sample signal vector matrix point range limit offset").split()
PROSE = ("the of and to in is that for it as was with be by on not he this are or his from at which but have an "
         "they you were her all she there would their we him been has when who will more no if out so said what "
         "up its about into than them can only other new some could time these two may then do first any my now "
         "such like our over man me even most made after also did many before must through back years where much "
         "your way well down should because each just those people how too little state good very make world still "
         "own see men work long get here between both life being under never day same another know while last "
         "might us great old year off come since against go came right used take three").split()
NAMES = ("Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Mallory Niaj Olivia Peggy Rupert Sybil Trent "
         "Victor Walter").split()
CITIES = "Paris Berlin Madrid Rome Oslo Lisbon Vienna Prague Warsaw Dublin Athens Zurich".split()


class Gen:
    """Random pieces shared by the generators."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def n(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi + 1))

    def ident(self, parts: int | None = None, sep: str = "_") -> str:
        return sep.join(self.pick(WORDS) for _ in range(parts or self.n(1, 2)))

    def camel(self) -> str:
        first, *rest = [self.pick(WORDS) for _ in range(self.n(1, 3))]
        return first + "".join(w.capitalize() for w in rest)

    def pascal(self) -> str:
        return "".join(self.pick(WORDS).capitalize() for _ in range(self.n(1, 3)))

    def sentence(self, lo: int = 6, hi: int = 16) -> str:
        words = [self.pick(PROSE) for _ in range(self.n(lo, hi))]
        return " ".join(words).capitalize() + "."

    def paragraph(self, lo: int = 3, hi: int = 7) -> str:
        return " ".join(self.sentence() for _ in range(self.n(lo, hi)))

    def number(self) -> str:
        return str(self.n(0, 5000)) if self.rng.random() < 0.6 else f"{self.rng.normal() * 100:.3f}"

    def repeat(self, make, lo: int, hi: int, sep: str = "\n") -> str:
        return sep.join(make() for _ in range(self.n(lo, hi)))


def gen_python(g: Gen) -> bytes:
    def function():
        name, args = g.ident(), ", ".join(dict.fromkeys(g.ident(1) for _ in range(g.n(1, 3))))
        body = g.repeat(lambda: f"    {g.ident(1)} = {g.ident(1)}.{g.ident(1)}({g.number()})", 2, 6)
        return (f"def {name}({args}):\n    \"\"\"{g.sentence()}\"\"\"\n{body}\n"
                f"    if {g.ident(1)} > {g.n(0, 100)}:\n        return {g.ident(1)}\n    return None\n")

    def klass():
        return (f"class {g.pascal()}:\n    def __init__(self, {g.ident(1)}):\n        self.{g.ident(1)} = {g.ident(1)}\n\n"
                f"    def {g.ident()}(self):\n        for {g.ident(1)} in range({g.n(1, 50)}):\n"
                f"            print(f\"{{self.{g.ident(1)}}}\")\n")

    head = g.repeat(lambda: g.pick(["import os", "import sys", "import json", "from pathlib import Path",
                                   "import numpy as np", "from typing import Any", "import re"]), 2, 5)
    body = "\n\n".join((function if g.rng.random() < 0.6 else klass)() for _ in range(g.n(2, 6)))
    tail = "\n\nif __name__ == \"__main__\":\n    main()\n" if g.rng.random() < 0.5 else "\n"
    return (f"#!/usr/bin/env python3\n\"\"\"{g.sentence()}\"\"\"\n{head}\n\n\n{body}{tail}").encode()


def gen_javascript(g: Gen) -> bytes:
    def function():
        body = g.repeat(lambda: f"  const {g.camel()} = {g.camel()}.{g.camel()}({g.number()});", 2, 5)
        return (f"function {g.camel()}({g.camel()}, {g.camel()}) {{\n{body}\n  if ({g.camel()} === undefined) {{\n"
                f"    return null;\n  }}\n  return {g.camel()}.map((x) => x * {g.n(2, 9)});\n}}\n")

    def arrow():
        return (f"const {g.camel()} = async ({g.camel()}) => {{\n  const res = await fetch(`/api/{g.ident(1)}/${{id}}`);\n"
                f"  document.getElementById('{g.ident(1, '-')}').innerHTML = res.{g.camel()};\n}};\n")

    head = g.repeat(lambda: f"const {g.camel()} = require('{g.ident(1)}');", 1, 3)
    body = "\n".join((function if g.rng.random() < 0.5 else arrow)() for _ in range(g.n(2, 6)))
    return f"'use strict';\n{head}\n\n{body}\nmodule.exports = {{ {g.camel()}, {g.camel()} }};\n".encode()


def gen_c(g: Gen) -> bytes:
    def function():
        body = g.repeat(lambda: f"    {g.pick(['int', 'size_t', 'double', 'char *'])} {g.ident()} = {g.ident()}({g.n(0, 99)});", 2, 5)
        return (f"static int {g.ident()}(const char *{g.ident(1)}, int {g.ident(1)})\n{{\n{body}\n"
                f"    for (int i = 0; i < {g.ident(1)}; i++) {{\n        {g.ident(1)}[i] = {g.ident(1)}[i] * {g.n(2, 9)};\n"
                f"    }}\n    printf(\"%d\\n\", {g.ident(1)});\n    return 0;\n}}\n")

    head = g.repeat(lambda: f"#include <{g.pick(['stdio.h', 'stdlib.h', 'string.h', 'stdint.h', 'math.h'])}>", 2, 4)
    defs = g.repeat(lambda: f"#define {g.ident().upper()} {g.n(1, 4096)}", 1, 3)
    body = "\n".join(function() for _ in range(g.n(2, 5)))
    return (f"/* {g.sentence()} */\n{head}\n{defs}\n\n{body}\nint main(int argc, char **argv)\n{{\n"
            f"    return {g.ident()}(argv[0], argc);\n}}\n").encode()


def gen_java(g: Gen) -> bytes:
    cls = g.pascal()
    methods = "\n".join(
        f"    public {g.pick(['int', 'String', 'void', 'List<String>'])} {g.camel()}({g.pick(['int', 'String'])} {g.camel()}) {{\n"
        f"        {g.camel()}.{g.camel()}({g.number()});\n        return;\n    }}\n" for _ in range(g.n(2, 5)))
    return (f"package com.{g.ident(1)}.{g.ident(1)};\n\nimport java.util.List;\nimport java.util.ArrayList;\n\n"
            f"public class {cls} {{\n    private final int {g.camel()};\n\n{methods}}}\n").encode()


def gen_go(g: Gen) -> bytes:
    funcs = "\n".join(
        f"func {g.pascal()}({g.camel()} int, {g.camel()} string) (int, error) {{\n"
        f"\tif {g.camel()} := {g.camel()}({g.n(0, 9)}); err != nil {{\n\t\treturn 0, err\n\t}}\n"
        f"\tfmt.Println({g.camel()})\n\treturn {g.n(0, 99)}, nil\n}}\n" for _ in range(g.n(2, 5)))
    return f"package {g.ident(1)}\n\nimport (\n\t\"fmt\"\n\t\"os\"\n)\n\n{funcs}".encode()


def gen_rust(g: Gen) -> bytes:
    funcs = "\n".join(
        f"pub fn {g.ident()}({g.ident(1)}: &{g.pick(['str', 'mut Vec<u8>', 'Path'])}) -> Result<usize, Error> {{\n"
        f"    let mut {g.ident(1)} = {g.pascal()}::new();\n    for x in {g.ident(1)}.iter() {{\n"
        f"        {g.ident(1)}.push(*x);\n    }}\n    Ok({g.n(0, 99)})\n}}\n" for _ in range(g.n(2, 5)))
    return f"use std::io::{{self, Error}};\nuse std::path::Path;\n\n{funcs}".encode()


def gen_json(g: Gen) -> bytes:
    import json

    def value(depth):
        r = g.rng.random()
        if depth < 2 and r < 0.3:
            return {g.camel(): value(depth + 1) for _ in range(g.n(2, 5))}
        if depth < 2 and r < 0.45:
            return [value(depth + 1) for _ in range(g.n(1, 4))]
        return g.pick([g.n(0, 1000), g.sentence(2, 5), True, None, round(float(g.rng.normal()), 4)])

    records = [{g.camel(): value(0) for _ in range(g.n(3, 7))} for _ in range(g.n(2, 8))]
    return json.dumps(records, indent=g.pick([2, 4])).encode()


def gen_jsonl(g: Gen) -> bytes:
    import json
    keys = [g.ident() for _ in range(g.n(3, 6))]
    rows = [json.dumps({k: g.pick([g.n(0, 999), g.sentence(2, 6), g.pick(NAMES)]) for k in keys})
            for _ in range(g.n(8, 30))]
    return ("\n".join(rows) + "\n").encode()


def gen_html(g: Gen) -> bytes:
    items = g.repeat(lambda: f"      <li><a href=\"/{g.ident(1)}/{g.ident(1)}.html\">{g.sentence(2, 5)}</a></li>", 3, 8)
    paras = g.repeat(lambda: f"    <p class=\"{g.ident(1)}\">{g.paragraph(1, 3)}</p>", 2, 5)
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n  <meta charset=\"utf-8\">\n  <title>{g.sentence(2, 5)}</title>\n"
            f"  <link rel=\"stylesheet\" href=\"style.css\">\n</head>\n<body>\n  <div id=\"{g.ident(1)}\">\n"
            f"    <h1>{g.sentence(2, 6)}</h1>\n    <ul>\n{items}\n    </ul>\n{paras}\n  </div>\n</body>\n</html>\n").encode()


def gen_xml(g: Gen) -> bytes:
    tag = g.ident(1)
    field = g.ident(1)
    items = g.repeat(lambda: f"  <{tag} id=\"{g.n(1, 9999)}\" {g.ident(1)}=\"{g.ident(1)}\">\n"
                             f"    <name>{g.pick(NAMES)}</name>\n    <{field}>{g.number()}</{field}>\n  </{tag}>", 3, 10)
    return f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{tag}s>\n{items}\n</{tag}s>\n".encode()


def _table(g: Gen, sep: str) -> bytes:
    cols = [g.ident(1) for _ in range(g.n(3, 7))]
    kinds = [g.n(0, 2) for _ in cols]
    rows = [sep.join(cols)]
    for _ in range(g.n(10, 60)):
        cells = [str(g.n(0, 9999)) if k == 0 else f"{g.rng.normal() * 50:.2f}" if k == 1 else g.pick(NAMES + CITIES)
                 for k in kinds]
        rows.append(sep.join(cells))
    return ("\n".join(rows) + "\n").encode()


def gen_csv(g: Gen) -> bytes:
    return _table(g, ",")


def gen_tsv(g: Gen) -> bytes:
    return _table(g, "\t")


def gen_markdown(g: Gen) -> bytes:
    parts = [f"# {g.sentence(2, 5)[:-1]}\n", g.paragraph(), ""]
    for _ in range(g.n(2, 4)):
        parts += [f"## {g.sentence(1, 4)[:-1]}\n", g.paragraph(1, 3), "",
                  g.repeat(lambda: f"- {g.sentence(3, 8)} See [{g.ident(1)}](https://example.com/{g.ident(1)}).", 2, 5), "",
                  f"```\n{g.ident()} --{g.ident(1)} {g.n(1, 9)}\n```", ""]
    return "\n".join(parts).encode()


def gen_yaml(g: Gen) -> bytes:
    def block(indent):
        lines = []
        for _ in range(g.n(2, 5)):
            key = g.ident()
            if indent < 4 and g.rng.random() < 0.35:
                lines.append(" " * indent + f"{key}:")
                lines.extend(block(indent + 2))
            elif g.rng.random() < 0.2:
                lines.append(" " * indent + f"{key}:")
                lines.extend(" " * (indent + 2) + f"- {g.ident(1)}" for _ in range(g.n(1, 3)))
            else:
                lines.append(" " * indent + f"{key}: {g.pick([g.number(), g.ident(1), 'true', 'false'])}")
        return lines

    return ("---\n" + "\n".join(block(0) + block(0)) + "\n").encode()


def gen_ini(g: Gen) -> bytes:
    sections = [f"[{g.ident(1)}]\n" + g.repeat(lambda: f"{g.ident()} = {g.pick([g.number(), g.ident(1), 'yes', 'no'])}", 2, 6)
                for _ in range(g.n(2, 5))]
    return ("; " + g.sentence(3, 8) + "\n" + "\n\n".join(sections) + "\n").encode()


def gen_toml(g: Gen) -> bytes:
    sections = [f"[{g.ident(1)}]\n" + g.repeat(
        lambda: f"{g.ident()} = {g.pick([str(g.n(0, 99)), chr(34) + g.ident(1) + chr(34), 'true', '[1, 2, 3]'])}", 2, 6)
        for _ in range(g.n(2, 5))]
    return (f"# {g.sentence(3, 6)}\ntitle = \"{g.ident(1)}\"\n\n" + "\n\n".join(sections) + "\n").encode()


def gen_shell(g: Gen) -> bytes:
    lines = g.repeat(lambda: g.pick([
        f"if [ -f \"${g.ident(1).upper()}\" ]; then\n  echo \"{g.sentence(2, 5)}\"\nfi",
        f"for f in {g.ident(1)}/*.{g.pick(['txt', 'log', 'csv'])}; do\n  cp \"$f\" /tmp/{g.ident(1)}/\ndone",
        f"export {g.ident().upper()}=\"{g.ident(1)}\"",
        f"{g.pick(['grep -v', 'sed -e', 'awk'])} '{g.ident(1)}' \"$1\" | sort | uniq -c > {g.ident(1)}.out",
        f"mkdir -p \"${{HOME}}/{g.ident(1)}\" && cd \"${{HOME}}/{g.ident(1)}\""]), 4, 12)
    return f"#!/bin/bash\nset -euo pipefail\n\n{lines}\nexit 0\n".encode()


def gen_txt(g: Gen) -> bytes:
    return ("\n\n".join(g.paragraph(3, 8) for _ in range(g.n(2, 6))) + "\n").encode()


def gen_sql(g: Gen) -> bytes:
    table = "tbl_" + g.ident()
    cols = [g.ident(1) for _ in range(g.n(2, 5))]
    create = (f"CREATE TABLE {table} (\n  id INTEGER PRIMARY KEY,\n" +
              ",\n".join(f"  {c} {g.pick(['VARCHAR(255)', 'INTEGER', 'TEXT', 'REAL'])}" for c in cols) + "\n);\n")
    inserts = g.repeat(lambda: f"INSERT INTO {table} (id, {', '.join(cols)}) VALUES ({g.n(1, 999)}, " +
                       ", ".join(f"'{g.pick(NAMES)}'" for _ in cols) + ");", 3, 12)
    select = f"SELECT {', '.join(cols)} FROM {table} WHERE {cols[0]} > {g.n(0, 99)} ORDER BY {cols[-1]} DESC;\n"
    return f"-- {g.sentence(3, 6)}\nDROP TABLE IF EXISTS {table};\n{create}\n{inserts}\n\n{select}".encode()


def gen_css(g: Gen) -> bytes:
    rules = g.repeat(lambda: f"{g.pick(['.', '#', ''])}{g.ident(1, '-')} {g.pick(['a', 'div', 'p', 'span', 'li'])} {{\n" +
                     g.repeat(lambda: f"  {g.pick(['color', 'margin', 'padding', 'font-size', 'background', 'border'])}: "
                              f"{g.pick(['#' + format(g.n(0, 0xFFFFFF), '06x'), str(g.n(0, 40)) + 'px', 'auto', 'none', '1em'])};", 2, 5)
                     + "\n}", 4, 12, "\n\n")
    return (rules + "\n").encode()


def gen_php(g: Gen) -> bytes:
    funcs = "\n".join(f"function {g.camel()}(${g.camel()}, ${g.camel()}) {{\n    ${g.camel()} = array();\n"
                      f"    foreach (${g.camel()} as $key => $value) {{\n        echo \"<p>\" . htmlspecialchars($value) . \"</p>\";\n"
                      f"    }}\n    return ${g.camel()};\n}}\n" for _ in range(g.n(2, 5)))
    return f"<?php\nrequire_once '{g.ident(1)}.php';\n\n{funcs}\n?>\n".encode()


def gen_ruby(g: Gen) -> bytes:
    methods = "\n".join(f"  def {g.ident()}({g.ident(1)})\n    @{g.ident(1)}.each do |{g.ident(1)}|\n"
                        f"      puts \"#{{{g.ident(1)}}}\"\n    end\n    {g.ident(1)}.nil? ? {g.n(0, 9)} : {g.ident(1)}\n  end\n"
                        for _ in range(g.n(2, 5)))
    return f"require '{g.ident(1)}'\n\nclass {g.pascal()} < {g.pascal()}\n  attr_reader :{g.ident(1)}\n\n{methods}end\n".encode()


def gen_latex(g: Gen) -> bytes:
    body = "\n\n".join(f"\\section{{{g.sentence(2, 4)[:-1]}}}\n{g.paragraph()}\n\\begin{{equation}}\n"
                       f"  {g.ident(1)} = \\sum_{{i=1}}^{{n}} x_i^{g.n(2, 4)}\n\\end{{equation}}" for _ in range(g.n(2, 4)))
    return (f"\\documentclass{{article}}\n\\usepackage{{amsmath}}\n\\title{{{g.sentence(2, 5)[:-1]}}}\n"
            f"\\begin{{document}}\n\\maketitle\n{body}\n\\end{{document}}\n").encode()


def gen_diff(g: Gen) -> bytes:
    name = f"{g.ident(1)}/{g.ident()}.py"
    hunks = "\n".join(f"@@ -{g.n(1, 200)},{g.n(3, 9)} +{g.n(1, 200)},{g.n(3, 9)} @@ def {g.ident()}():\n"
                      f"     {g.ident(1)} = {g.n(0, 9)}\n-    {g.ident(1)} = {g.ident(1)}({g.n(0, 9)})\n"
                      f"+    {g.ident(1)} = {g.ident(1)}({g.n(0, 9)}, {g.ident(1)})\n     return {g.ident(1)}" for _ in range(g.n(1, 4)))
    return (f"diff --git a/{name} b/{name}\nindex {g.n(0, 2**28):07x}..{g.n(0, 2**28):07x} 100644\n"
            f"--- a/{name}\n+++ b/{name}\n{hunks}\n").encode()


def gen_makefile(g: Gen) -> bytes:
    targets = "\n\n".join(f"{g.ident(1)}: {g.ident(1)}.o {g.ident(1)}.o\n\t$(CC) $(CFLAGS) -o $@ $^\n" for _ in range(g.n(2, 5)))
    return (f"CC = gcc\nCFLAGS = -O{g.n(0, 3)} -Wall\nSRC = $(wildcard *.c)\n\nall: {g.ident(1)}\n\n{targets}\n"
            f"%.o: %.c\n\t$(CC) $(CFLAGS) -c $< -o $@\n\n.PHONY: clean\nclean:\n\trm -f *.o\n").encode()


def gen_dockerfile(g: Gen) -> bytes:
    runs = g.repeat(lambda: f"RUN {g.pick(['apt-get update && apt-get install -y', 'pip install', 'npm install'])} "
                    f"{g.ident(1)} {g.ident(1)}", 2, 5)
    return (f"FROM {g.pick(['python:3.11-slim', 'ubuntu:22.04', 'node:20', 'alpine:3.19'])}\n\n"
            f"WORKDIR /{g.ident(1)}\nCOPY . /{g.ident(1)}\n{runs}\nENV {g.ident().upper()}={g.n(0, 99)}\n"
            f"EXPOSE {g.n(1000, 9000)}\nCMD [\"{g.ident(1)}\", \"--{g.ident(1)}\"]\n").encode()


def gen_srt(g: Gen) -> bytes:
    t = 0.0
    cues = []
    for i in range(1, g.n(6, 20)):
        start, t = t, t + float(g.rng.uniform(1, 5))

        def ts(x):
            return f"{int(x // 3600):02d}:{int(x // 60 % 60):02d}:{int(x % 60):02d},{int(x % 1 * 1000):03d}"
        cues.append(f"{i}\n{ts(start)} --> {ts(t)}\n{g.sentence(3, 9)}\n")
        t += float(g.rng.uniform(0.1, 2))
    return "\n".join(cues).encode()


def gen_svg(g: Gen) -> bytes:
    shapes = g.repeat(lambda: g.pick([
        f"  <rect x=\"{g.n(0, 200)}\" y=\"{g.n(0, 200)}\" width=\"{g.n(5, 90)}\" height=\"{g.n(5, 90)}\" fill=\"#{g.n(0, 0xFFFFFF):06x}\"/>",
        f"  <circle cx=\"{g.n(0, 200)}\" cy=\"{g.n(0, 200)}\" r=\"{g.n(2, 50)}\" stroke=\"black\" fill=\"none\"/>",
        f"  <path d=\"M{g.n(0, 99)} {g.n(0, 99)} L{g.n(0, 99)} {g.n(0, 99)} Z\" stroke-width=\"{g.n(1, 4)}\"/>"]), 3, 12)
    return (f"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{g.n(100, 400)}\" height=\"{g.n(100, 400)}\" "
            f"viewBox=\"0 0 256 256\">\n{shapes}\n</svg>\n").encode()


def gen_rtf(g: Gen) -> bytes:
    paras = "\n".join(f"\\pard\\sa200\\sl276\\slmult1\\f0\\fs{g.pick([20, 22, 24])} {g.paragraph(1, 3)}\\par" for _ in range(g.n(2, 5)))
    return ("{\\rtf1\\ansi\\ansicpg1252\\deff0\\nouicompat{\\fonttbl{\\f0\\fnil\\fcharset0 Calibri;}}\n"
            f"{{\\*\\generator Riched20 10.0.19041}}\\viewkind4\\uc1\n{paras}\n}}\n").encode()


def gen_ics(g: Gen) -> bytes:
    events = "\n".join(f"BEGIN:VEVENT\nUID:{g.n(0, 10**9)}@{g.ident(1)}.org\nDTSTAMP:2024{g.n(1, 12):02d}{g.n(1, 28):02d}T120000Z\n"
                       f"DTSTART:2024{g.n(1, 12):02d}{g.n(1, 28):02d}T{g.n(8, 18):02d}0000Z\nSUMMARY:{g.sentence(2, 5)}\n"
                       f"LOCATION:{g.pick(CITIES)}\nEND:VEVENT" for _ in range(g.n(1, 5)))
    return f"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//{g.ident(1)}//EN\n{events}\nEND:VCALENDAR\n".replace("\n", "\r\n").encode()


def gen_eml(g: Gen) -> bytes:
    a, b = g.pick(NAMES), g.pick(NAMES)
    return (f"Return-Path: <{a.lower()}@{g.ident(1)}.com>\nReceived: from mail.{g.ident(1)}.com (mail.{g.ident(1)}.com [10.0.{g.n(0, 255)}.{g.n(0, 255)}])\n"
            f"Message-ID: <{g.n(0, 10**12)}@{g.ident(1)}.com>\nDate: Mon, {g.n(1, 28)} Mar 2024 {g.n(0, 23):02d}:{g.n(0, 59):02d}:00 +0000\n"
            f"From: {a} <{a.lower()}@{g.ident(1)}.com>\nTo: {b} <{b.lower()}@{g.ident(1)}.org>\nSubject: {g.sentence(2, 6)}\n"
            f"MIME-Version: 1.0\nContent-Type: text/plain; charset=\"UTF-8\"\nContent-Transfer-Encoding: 7bit\n\n"
            f"Hi {b},\n\n{g.paragraph(2, 5)}\n\nBest,\n{a}\n").encode()


def gen_pem(g: Gen) -> bytes:
    import base64
    body = base64.b64encode(g.rng.bytes(g.n(600, 1500))).decode()
    lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN CERTIFICATE-----\n{lines}\n-----END CERTIFICATE-----\n".encode()


def _image(g: Gen):
    from PIL import Image, ImageDraw
    w, h = g.n(16, 160), g.n(16, 160)
    img = Image.new("RGB", (w, h), tuple(int(v) for v in g.rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(g.n(2, 10)):
        x0, y0 = g.n(0, w - 1), g.n(0, h - 1)
        box = [x0, y0, min(w - 1, x0 + g.n(1, w)), min(h - 1, y0 + g.n(1, h))]
        colour = tuple(int(v) for v in g.rng.integers(0, 256, 3))
        (draw.rectangle if g.rng.random() < 0.5 else draw.ellipse)(box, fill=colour)
    if g.rng.random() < 0.5:  # photo-like noise
        noise = g.rng.normal(0, g.rng.uniform(2, 30), (h, w, 3))
        img = Image.fromarray(np.clip(np.asarray(img) + noise, 0, 255).astype(np.uint8))
    return img


def _saved(img, fmt: str, **kwargs) -> bytes:
    import io
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def gen_png(g: Gen) -> bytes:
    return _saved(_image(g), "PNG")


def gen_jpeg(g: Gen) -> bytes:
    return _saved(_image(g), "JPEG", quality=g.n(50, 95))


def gen_gif(g: Gen) -> bytes:
    return _saved(_image(g).convert("P"), "GIF")


def gen_bmp(g: Gen) -> bytes:
    return _saved(_image(g), "BMP")


def gen_tiff(g: Gen) -> bytes:
    return _saved(_image(g), "TIFF")


def gen_ico(g: Gen) -> bytes:
    return _saved(_image(g).resize((32, 32)), "ICO", sizes=[(32, 32)])


def gen_zip(g: Gen) -> bytes:
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for _ in range(g.n(1, 5)):
            info = zipfile.ZipInfo(f"{g.ident(1)}/{g.ident()}.{g.pick(['txt', 'py', 'csv', 'json'])}", (2024, 1, g.n(1, 28), 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, gen_txt(g) if g.rng.random() < 0.5 else gen_python(g))
    return buf.getvalue()


def gen_gzip(g: Gen) -> bytes:
    import gzip
    return gzip.compress(gen_txt(g) + gen_csv(g), mtime=0)


def gen_bzip(g: Gen) -> bytes:
    import bz2
    return bz2.compress(gen_json(g) + gen_txt(g))


def gen_xz(g: Gen) -> bytes:
    import lzma
    return lzma.compress(gen_txt(g) + gen_python(g))


def gen_tar(g: Gen) -> bytes:
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for _ in range(g.n(1, 3)):
            data = gen_txt(g) if g.rng.random() < 0.5 else gen_c(g)
            info = tarfile.TarInfo(f"{g.ident(1)}/{g.ident()}.{g.pick(['txt', 'c', 'md'])}")
            info.size, info.mtime, info.mode = len(data), 1700000000 + g.n(0, 10**6), 0o644
            info.uname = info.gname = g.ident(1)
            archive.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def gen_pdf(g: Gen) -> bytes:
    import zlib
    text = " ".join(f"BT /F1 {g.n(9, 14)} Tf {g.n(40, 100)} {700 - 20 * i} Td ({g.sentence(3, 8)}) Tj ET" for i in range(g.n(3, 12)))
    stream = zlib.compress(text.encode()) if g.rng.random() < 0.7 else text.encode()
    filt = "/Filter /FlateDecode " if stream[:1] == b"x" else ""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< " + filt.encode() + b"/Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = bytearray(b"%PDF-1." + str(g.n(3, 7)).encode() + b"\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def gen_sqlite(g: Gen) -> bytes:
    import os
    import sqlite3
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "db.sqlite")
        con = sqlite3.connect(path)
        for _ in range(g.n(1, 3)):
            table = "t_" + g.ident()
            con.execute(f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, name TEXT, value REAL)")
            con.executemany(f"INSERT INTO {table} (name, value) VALUES (?, ?)",
                            [(g.sentence(1, 4), float(g.rng.normal())) for _ in range(g.n(5, 60))])
        con.commit()
        con.close()
        return Path(path).read_bytes()


def gen_wav(g: Gen) -> bytes:
    import io
    import wave
    rate = g.pick([8000, 16000, 22050, 44100])
    t = np.arange(int(rate * g.rng.uniform(0.05, 0.3))) / rate
    signal = sum(np.sin(2 * np.pi * g.rng.uniform(100, 2000) * t + g.rng.uniform(0, 6)) for _ in range(g.n(1, 3)))
    signal = signal / (np.max(np.abs(signal)) + 1e-9) * g.rng.uniform(0.1, 0.9) + g.rng.normal(0, 0.01, len(t))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(signal, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def gen_npy(g: Gen) -> bytes:
    import io
    buf = io.BytesIO()
    shape = tuple(g.n(2, 40) for _ in range(g.n(1, 3)))
    np.save(buf, g.rng.normal(size=shape).astype(g.pick(["<f4", "<f8", "<i4"])))
    return buf.getvalue()


def gen_pickle(g: Gen) -> bytes:
    import pickle
    obj = {g.ident(): [g.n(0, 999), g.sentence(2, 5), {g.ident(1): float(g.rng.normal())}] for _ in range(g.n(3, 20))}
    return pickle.dumps(obj, protocol=g.pick([2, 3, 4]))


def gen_pythonbytecode(g: Gen) -> bytes:
    import importlib.util
    import marshal
    code = compile(gen_python(g).decode(), f"{g.ident()}.py", "exec")
    return importlib.util.MAGIC_NUMBER + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00" * 2 + marshal.dumps(code)


GENERATORS = {name[len("gen_"):]: fn for name, fn in globals().items() if name.startswith("gen_")}
BINARY = ("png", "jpeg", "gif", "bmp", "tiff", "ico", "zip", "gzip", "bzip", "xz", "tar", "pdf", "sqlite", "wav", "npy",
          "pickle", "pythonbytecode")
TEXT = tuple(sorted(set(GENERATORS) - set(BINARY)))
SNIPPET_BYTES = (24, 320)


def snippet(content: bytes, rng: np.random.Generator, from_start: bool) -> bytes:
    """A short piece of a text file: its first bytes, or a window starting at a line break inside it."""
    size = int(rng.integers(*SNIPPET_BYTES))
    if from_start or len(content) <= size:
        return content[:size]
    breaks = [i + 1 for i in range(len(content) - size) if content[i] == 10] or [0]
    start = breaks[int(rng.integers(len(breaks)))]
    return content[start:start + size]


def make_files(count: int, seed: int = SEED) -> list[tuple[str, bytes]]:
    """`count` (type, content) pairs, the types in a shuffled round-robin so every split sees them all.

    Binary files are whole; a text file is whole, its first 24-320 bytes, or 24-320 bytes from a line
    inside it, one third each: short pieces are what separates good policies from nearly good ones.
    """
    rng = np.random.default_rng(seed)
    g = Gen(rng)
    kinds = sorted(GENERATORS)
    order: list[str] = []
    while len(order) < count:
        order.extend(kinds[i] for i in rng.permutation(len(kinds)))
    files = []
    for kind in order[:count]:
        content = GENERATORS[kind](g)
        form = int(rng.integers(3))
        if kind in TEXT and form:
            content = snippet(content, rng, from_start=form == 1)
        files.append((kind, content))
    return files


def prepare(out: Path, sizes: dict) -> dict:
    import json
    import shutil

    from zoo import common

    model_dir = common.package_dir("magika").joinpath(*MODEL_DIR)
    config = json.loads((model_dir / "config.min.json").read_text())
    labels_space = config["target_labels_space"]
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_dir / "model.onnx", out / "model.onnx")
    total = sizes["search"] + sizes["test"] + sizes["calib"]
    files = make_files(total)
    rows = [features(content, config["beg_size"], config["end_size"], config["padding_token"], config["block_size"])
            for _, content in files]
    arrays = {"bytes": np.asarray(rows, dtype=np.int32),
              "labels": np.asarray([labels_space.index(kind) for kind, _ in files], dtype=np.int64)}
    common.write_splits(out, arrays, sizes)
    return {"content_types": sorted(GENERATORS), "labels_space": labels_space,
            "model_config": {k: config[k] for k in ("beg_size", "end_size", "padding_token", "block_size")}}
