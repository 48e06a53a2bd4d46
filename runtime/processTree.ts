/**
 * Everything a command started, found and killed on Linux. A process group
 * is not enough: a command's child can `setsid`, fork again and be
 * reparented to init, leaving both its group and its parent's tree. So every
 * command the agent starts carries a marker in its environment, which its
 * descendants inherit wherever they move, and a kill takes every process of
 * the command's group or session, every process whose environment carries
 * its marker, and every descendant of those, scanning /proc again until a
 * scan finds none. A process that leaves its session *and* starts a program
 * with its environment emptied (`setsid env -i …`) is not found: the agent
 * cannot tell it from any other process of its user.
 *
 * Where /proc is missing (macOS), only the process group is killed.
 */
import { existsSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { errorCode } from './failure';

/** The environment variable naming who started a process: `<agent key>/<boot id>/<process id>`. */
export const PROCESS_MARKER = 'FERRY_AGENT_PROCESS';
const MARKER_PREFIX = Buffer.from(`${PROCESS_MARKER}=`);
/** A command that forks faster than it is killed is scanned again; it cannot outrun this many rounds of SIGKILL. */
const MAX_SCANS = 20;

export function processMarker(agentKey: string, bootId: string, processId: string): string {
  return `${agentKey}/${bootId}/${processId}`;
}

export interface KillScope {
  /** Pids of commands the agent spawned (each leads its own group and session) that have not been reaped yet. */
  leaders: number[];
  /** Whether a process carrying this marker value is in scope. */
  marked: (marker: string) => boolean;
}

interface ProcEntry {
  pid: number;
  ppid: number;
  pgrp: number;
  sid: number;
}

const hasProc = () => existsSync('/proc/self/stat');

/** `/proc/<pid>/stat` fields after the command name (which may hold spaces and parentheses); undefined for a process gone or dead. */
async function readEntry(pid: number): Promise<ProcEntry | undefined> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  const [state, ppid, pgrp, sid] = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // A zombie is already dead; its parent (init, or the agent) reaps it.
  if (state === 'Z' || state === 'X') return undefined;
  return { pid, ppid: Number(ppid), pgrp: Number(pgrp), sid: Number(sid) };
}

async function markerOf(pid: number): Promise<string | undefined> {
  let environ: Buffer;
  try {
    environ = await readFile(`/proc/${pid}/environ`);
  } catch {
    // Gone, or another user's process this agent may not read (then it cannot have started it either).
    return undefined;
  }
  for (let start = 0; start < environ.length; ) {
    let end = environ.indexOf(0, start);
    if (end < 0) end = environ.length;
    if (environ.subarray(start, start + MARKER_PREFIX.length).equals(MARKER_PREFIX)) return environ.subarray(start + MARKER_PREFIX.length, end).toString();
    start = end + 1;
  }
  return undefined;
}

async function scan(): Promise<ProcEntry[]> {
  const names = await readdir('/proc');
  const entries = await Promise.all(names.filter((name) => /^\d+$/.test(name)).map((name) => readEntry(Number(name))));
  return entries.filter((entry): entry is ProcEntry => entry !== undefined);
}

/** The processes in scope now: the leaders' groups and sessions, marked processes, and all their descendants. */
async function inScope(scope: KillScope): Promise<number[]> {
  const leaders = new Set(scope.leaders);
  const processes = (await scan()).filter((p) => p.pid !== process.pid && p.pid !== 1);
  const found = new Set<number>();
  await Promise.all(
    processes.map(async (p) => {
      if (leaders.has(p.pid) || leaders.has(p.pgrp) || leaders.has(p.sid)) found.add(p.pid);
      else {
        const marker = await markerOf(p.pid);
        if (marker !== undefined && scope.marked(marker)) found.add(p.pid);
      }
    }),
  );
  const children = new Map<number, number[]>();
  for (const p of processes) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p.pid]);
  const pending = [...found];
  for (let pid = pending.pop(); pid !== undefined; pid = pending.pop()) {
    for (const child of children.get(pid) ?? []) {
      if (!found.has(child) && child !== process.pid) {
        found.add(child);
        pending.push(child);
      }
    }
  }
  return [...found];
}

function kill(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch (err) {
    // ESRCH: it ended meanwhile. EPERM: not ours to signal.
    if (errorCode(err) !== 'ESRCH' && errorCode(err) !== 'EPERM') throw err;
    return false;
  }
}

/** SIGKILLs every process in scope until a scan finds none; answers how many processes it killed. */
export async function killScope(scope: KillScope): Promise<number> {
  const killed = new Set<number>();
  for (const leader of scope.leaders) if (kill(-leader, 'SIGKILL')) killed.add(leader);
  if (!hasProc()) return killed.size;
  for (let round = 0; round < MAX_SCANS; round++) {
    const victims = await inScope(scope);
    if (victims.length === 0) break;
    for (const pid of victims) if (kill(pid, 'SIGKILL')) killed.add(pid);
  }
  return killed.size;
}

/** Sends `signal` to the group led by `pid`; false when the group is gone. */
export function signalGroup(pid: number | null, signal: NodeJS.Signals): boolean {
  if (pid === null) return false;
  try {
    process.kill(-pid, signal);
    return true;
  } catch (err) {
    if (errorCode(err) !== 'ESRCH') throw err;
    return false;
  }
}
