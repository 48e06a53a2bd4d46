#!/usr/bin/env python3
"""A small agent that drives a ferry pipeline through `ferry mcp`.

It starts `ferry mcp` itself (over stdio, as any MCP client would) with the
PyPI `mcp` client, then plays the three roles of the seed's agents on a
sales CSV: the coder totals sales per category into artifacts/, the
validator recomputes the totals from data/ and checks them, the reporter
writes artifacts/report.md. ferry runs each piece of code only once the
session's inputs are verified on the target, once per request id.

    .tools/mcp-python/bin/python examples/mcp_agent.py --session py-demo --input /abs/path/to/csv-folder

Install the client with `bash scripts/install-tools.sh --only mcp-python`;
the stack must be up (`npx ferry up --detach`). Prints the report on
stdout, progress on stderr; exits 1 with the tool's error when a step fails.
"""

import argparse
import asyncio
import os
import sys
import uuid
from pathlib import Path

from mcp import ClientSession, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp_types import REQUEST_TIMEOUT

CSV = "Dat-fresh-food-claude.csv"

CODER = f"""
import csv, json, os
totals, rows = {{}}, 0
with open('data/{CSV}', encoding='utf-8') as f:
    for row in csv.DictReader(f):
        rows += 1
        totals[row['카테고리']] = totals.get(row['카테고리'], 0) + int(row['금액'])
os.makedirs('artifacts', exist_ok=True)
json.dump({{'rows': rows, 'totals': totals}}, open('artifacts/category_totals.json', 'w', encoding='utf-8'), ensure_ascii=False, sort_keys=True)
print(f'{{rows}} rows, {{len(totals)}} categories')
"""

VALIDATOR = f"""
import csv, json, sys
expected, rows = {{}}, 0
with open('data/{CSV}', encoding='utf-8') as f:
    for row in csv.DictReader(f):
        rows += 1
        expected[row['카테고리']] = expected.get(row['카테고리'], 0) + int(row['수량']) * int(row['단가'])
claimed = json.load(open('artifacts/category_totals.json', encoding='utf-8'))
ok = claimed['rows'] == rows and claimed['totals'] == expected
json.dump({{'ok': ok, 'rows': rows}}, open('artifacts/validation.json', 'w'))
print('totals verified' if ok else 'totals DO NOT match the data')
sys.exit(0 if ok else 1)
"""

REPORTER = """
import json
totals = json.load(open('artifacts/category_totals.json', encoding='utf-8'))
ok = json.load(open('artifacts/validation.json'))['ok']
grand = sum(totals['totals'].values())
lines = ['# Sales by category', '', f"{totals['rows']} rows; validator: {'totals verified against the data' if ok else 'MISMATCH'}", '',
         '| category | sales | share |', '|---|---:|---:|']
for category, amount in sorted(totals['totals'].items(), key=lambda kv: -kv[1]):
    lines.append(f'| {category} | {amount:,} | {amount / grand:.1%} |')
open('artifacts/report.md', 'w', encoding='utf-8').write('\\n'.join(lines) + '\\n')
print('report written')
"""

STAGES = [
    ("coder", "category totals in artifacts/category_totals.json", [("bash", "ls -la data/"), ("python", CODER)]),
    ("validator", "totals recomputed from data/ and checked", [("python", VALIDATOR)]),
    ("reporter", "report in artifacts/report.md", [("python", REPORTER)]),
]


class ToolFailed(Exception):
    pass


async def show_progress(progress: float, total: float | None, message: str | None) -> None:
    if message:
        print(f"    … {message}", file=sys.stderr)


async def call(session: ClientSession, name: str, **arguments) -> dict:
    """Calls a tool; a tool error ("<FailureType>: <cause>") becomes ToolFailed."""
    result = await session.call_tool(name, arguments, read_timeout_seconds=900, progress_callback=show_progress)
    if result.is_error:
        raise ToolFailed(f"{name}: {result.content[0].text}")
    return result.structured_content


async def execute(session: ClientSession, session_id: str, language: str, code: str) -> dict:
    """Runs code once: a resend after a lost answer carries the same request id, so ferry returns the first run's result."""
    request_id = str(uuid.uuid4())
    for _ in range(3):
        try:
            return await call(session, "execute_code", session_id=session_id, language=language, code=code, request_id=request_id)
        except MCPError as error:
            if error.code != REQUEST_TIMEOUT:
                raise
            print(f"    no answer yet; asking again with request id {request_id}", file=sys.stderr)
    raise ToolFailed(f"execute_code: no answer for request {request_id}")


async def play(session: ClientSession, args: argparse.Namespace) -> str:
    """The three roles, one stage each; returns the report."""
    started = await call(session, "start_session", session_id=args.session, inputs=[str(args.input)], stages=[stage for stage, _, _ in STAGES])
    print(f"session {args.session}: {started['workflow_id']} {started['status']}, inputs {[i['manifest_digest'][:12] for i in started['inputs']]}", file=sys.stderr)
    for stage, summary, steps in STAGES:
        for language, code in steps:
            result = await execute(session, args.session, language, code)
            verified = "inputs re-verified" if result["inputs_verified"] else "inputs checked"
            print(f"[{stage}] exit {result['exit_code']} in {result['duration_ms']} ms ({verified}): {result['stdout_tail'].strip().splitlines()[-1:]}", file=sys.stderr)
            if result["exit_code"] != 0:
                raise ToolFailed(f"[{stage}] exit {result['exit_code']}: {result['stderr_tail'].strip()[-500:]}")
        if stage == "reporter":
            report = await call(session, "read_file", session_id=args.session, path="artifacts/report.md")
        finished = await call(session, "finish_stage", session_id=args.session, stage=stage, summary=summary)
        print(f"[{stage}] finished: {finished['artifacts']['files_total']} artifacts collected", file=sys.stderr)
    status = await call(session, "session_status", session_id=args.session)
    print(f"pipeline {status['status']} after {status['executions_total']} executions", file=sys.stderr)
    return report["content"]


async def run(args: argparse.Namespace) -> str | ToolFailed:
    server = StdioServerParameters(command=args.node, args=[str(args.ferry), "mcp"], env=dict(os.environ))
    async with stdio_client(server) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            # Caught here: leaving the client's task groups with it would wrap it in an ExceptionGroup.
            try:
                return await play(session, args)
            except ToolFailed as failure:
                return failure


def main() -> int:
    repo = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--session", default="py-agent", help="pipeline session id")
    parser.add_argument("--input", type=Path, required=True, help=f"folder holding {CSV}")
    parser.add_argument("--node", default="node", help="node executable that runs ferry")
    parser.add_argument("--ferry", type=Path, default=repo / "bin" / "ferry.js", help="ferry's bin/ferry.js")
    args = parser.parse_args()
    outcome = asyncio.run(run(args))
    if isinstance(outcome, ToolFailed):
        print(f"agent: {outcome}", file=sys.stderr)
        return 1
    print(outcome, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
