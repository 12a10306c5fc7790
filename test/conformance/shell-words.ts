/**
 * Splits a command-line fragment into words the way bash's `eval` does for
 * what kvm-unit-tests' scripts build from x86/unittests.cfg (test_args and
 * extra_params): blanks separate words, '...' is literal, "..." keeps
 * blanks and honours \" \\ \$ \` and `...`, a backslash outside quotes
 * escapes the next character, and `command` is replaced by its output
 * (kvmclock_test passes `date +%s`), split into words when unquoted.
 * Parameter expansion ($VAR) is not done: the suite's x86 config uses none.
 */
export type CommandSubstitution = (command: string) => string;

export class ShellWordsError extends Error {}

export function shellWords(text: string, substitute: CommandSubstitution = noSubstitution): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let i = 0;
  const end = () => {
    if (inWord) words.push(word);
    word = '';
    inWord = false;
  };
  const backtick = (): string => {
    // i is at the opening backtick.
    let cmd = '';
    i++;
    while (i < text.length && text[i] !== '`') {
      if (text[i] === '\\' && i + 1 < text.length && '`\\$'.includes(text[i + 1] ?? '')) i++;
      cmd += text[i];
      i++;
    }
    if (i >= text.length) throw new ShellWordsError(`unterminated \` in ${JSON.stringify(text)}`);
    i++;
    // Like bash, drop trailing newlines of the output.
    return substitute(cmd).replace(/\n+$/, '');
  };
  while (i < text.length) {
    const c = text[i] ?? '';
    if (c === ' ' || c === '\t' || c === '\n') {
      end();
      i++;
    } else if (c === "'") {
      const close = text.indexOf("'", i + 1);
      if (close < 0) throw new ShellWordsError(`unterminated ' in ${JSON.stringify(text)}`);
      word += text.slice(i + 1, close);
      inWord = true;
      i = close + 1;
    } else if (c === '"') {
      inWord = true;
      i++;
      for (;;) {
        if (i >= text.length) throw new ShellWordsError(`unterminated " in ${JSON.stringify(text)}`);
        const d = text[i] ?? '';
        if (d === '"') {
          i++;
          break;
        }
        if (d === '\\' && '"\\$`\n'.includes(text[i + 1] ?? 'x')) {
          if (text[i + 1] !== '\n') word += text[i + 1];
          i += 2;
        } else if (d === '`') {
          word += backtick();
        } else {
          word += d;
          i++;
        }
      }
    } else if (c === '\\') {
      if (i + 1 < text.length && text[i + 1] !== '\n') {
        word += text[i + 1];
        inWord = true;
      }
      i += 2;
    } else if (c === '`') {
      // Unquoted: the output is split into words, joined to what is around it.
      const parts = backtick().split(/[ \t\n]+/);
      parts.forEach((p, k) => {
        if (k > 0) end();
        if (p !== '' || k > 0) {
          word += p;
          inWord = inWord || p !== '';
        }
      });
    } else {
      word += c;
      inWord = true;
      i++;
    }
  }
  end();
  return words;
}

function noSubstitution(command: string): string {
  throw new ShellWordsError(`command substitution \`${command}\` is not allowed here`);
}
