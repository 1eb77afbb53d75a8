package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestMigratingGuideCommandsParse keeps docs/migrating.md true: every
// hookrelay command in it, in code blocks and in `code spans`, names a
// command that exists, with flags it takes and as many arguments as it
// accepts.
func TestMigratingGuideCommandsParse(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/migrating.md")
	if err != nil {
		t.Fatal(err)
	}
	commands := docCommands(string(doc))
	if len(commands) < 20 {
		t.Fatalf("found only %d hookrelay commands in docs/migrating.md: %v", len(commands), commands)
	}
	for _, c := range commands {
		line := c.line
		argv := shellWords(line)
		root := newRootCmd()
		cmd, rest, err := root.Find(argv[1:])
		if err != nil || cmd == root || !cmd.Runnable() {
			t.Errorf("%q: no such command (%v)", line, err)
			continue
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Errorf("%q: %v", line, err)
			continue
		}
		if c.mention && len(rest) == 0 {
			continue // `hookrelay connect` in a sentence names the command
		}
		if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
			t.Errorf("%q: %v", line, err)
		}
	}
}

var codeSpan = regexp.MustCompile("`(hookrelay [^`]*)`")

type docCommand struct {
	line    string
	mention bool // a code span in prose, not a line of a code block
}

// docCommands finds hookrelay commands: lines of fenced blocks (comments
// cut off) and code spans.
func docCommands(doc string) []docCommand {
	var out []docCommand
	fenced := false
	for _, line := range strings.Split(doc, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			if strings.HasPrefix(trimmed, "hookrelay ") {
				out = append(out, docCommand{line: trimmed})
			}
			continue
		}
		for _, m := range codeSpan.FindAllStringSubmatch(line, -1) {
			out = append(out, docCommand{line: m[1], mention: true})
		}
	}
	return out
}

// shellWords splits a command line as a shell would for what the docs use:
// words, single and double quotes, and a trailing "# comment".
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case r == '#' && !inWord:
			return words
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}
