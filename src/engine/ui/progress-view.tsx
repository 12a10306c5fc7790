/**
 * The ink view of apply progress (the `tty` mode of progress.ts, which
 * imports this module only when it is needed: ink and React are slow to
 * load). Finished steps go into <Static>, written once above the live part;
 * the live part is the running steps' spinners, and at the end the summary.
 */
import { useEffect, useState } from 'react';
import { Box, Static, Text, render } from 'ink';
import type { ApplySummary, FinishedStep, ProgressView, ProgressViewState, RunningStep } from './progress.js';
import { formatElapsed } from './progress.js';

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const TICK_MS = 80;
/** A running step shows how long it has been running once it has taken this long. */
const SHOW_ELAPSED_MS = 5000;

const SYMBOLS: Record<FinishedStep['outcome'], { symbol: string; color: string }> = {
  done: { symbol: '✓', color: 'green' },
  failed: { symbol: '✗', color: 'red' },
  skipped: { symbol: '⊘', color: 'yellow' },
};

function FinishedLine({ line, color }: { line: FinishedStep; color: boolean }) {
  const { symbol, color: symbolColor } = SYMBOLS[line.outcome];
  return (
    <Text>
      <Text color={color ? symbolColor : undefined}>{symbol}</Text> {line.text}
      {line.note ? (
        <>
          {' '}
          {line.outcome === 'failed' ? (
            <Text color={color ? 'red' : undefined}>{line.note}</Text>
          ) : (
            <Text dimColor={color}>{line.note}</Text>
          )}
        </>
      ) : null}
    </Text>
  );
}

function RunningLine({ run, color }: { run: RunningStep; color: boolean }) {
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const timer = setInterval(() => setTick((t) => t + 1), TICK_MS);
    // A display must never keep the process alive.
    timer.unref();
    return () => clearInterval(timer);
  }, []);
  const elapsed = Date.now() - run.startedAt;
  return (
    <Text>
      <Text color={color ? 'cyan' : undefined}>{SPINNER[tick % SPINNER.length]}</Text> {run.text}
      {elapsed >= SHOW_ELAPSED_MS ? <Text dimColor={color}> [{formatElapsed(elapsed)} elapsed]</Text> : null}
    </Text>
  );
}

function Summary({ summary, color }: { summary: ApplySummary; color: boolean }) {
  // The ✗ lines show an error's first line; one with more is shown whole here.
  const long = summary.errors.filter((e) => e.error.includes('\n'));
  return (
    <Box flexDirection="column" marginTop={1}>
      {long.map((e) => (
        <Box key={`${e.op}:${e.resource}`} flexDirection="column" marginBottom={1}>
          <Text color={color ? 'red' : undefined}>
            Error: {e.resource} ({e.op}):
          </Text>
          <Box paddingLeft={2}>
            <Text>{e.error}</Text>
          </Box>
        </Box>
      ))}
      <Text bold={color} color={color ? (summary.ok ? 'green' : 'red') : undefined}>
        {summary.message}
      </Text>
    </Box>
  );
}

function ProgressApp({ state, color }: { state: ProgressViewState; color: boolean }) {
  return (
    <>
      <Static items={[...state.finished]}>
        {(line) => <FinishedLine key={line.step.key} line={line} color={color} />}
      </Static>
      {state.running.map((run) => (
        <RunningLine key={run.step.key} run={run} color={color} />
      ))}
      {state.summary ? <Summary summary={state.summary} color={color} /> : null}
    </>
  );
}

export function mountProgressView(
  out: NodeJS.WriteStream,
  opts: { color: boolean; /** ink's debug mode: every frame written whole (for tests). */ debug?: boolean },
): ProgressView {
  const { color } = opts;
  const instance = render(<ProgressApp state={{ finished: [], running: [] }} color={color} />, {
    stdout: out,
    debug: opts.debug ?? false,
    // Ctrl+C is the apply command's business (it must not leave a step half done unrecorded).
    exitOnCtrlC: false,
    patchConsole: out === process.stdout,
  });
  return {
    update(state) {
      instance.rerender(<ProgressApp state={state} color={color} />);
    },
    async close(state) {
      instance.rerender(<ProgressApp state={state} color={color} />);
      const exited = instance.waitUntilExit();
      instance.unmount();
      await exited;
    },
  };
}
