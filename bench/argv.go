package bench

import (
	"fmt"
	"strconv"
	"strings"
)

// multiFlags take several values after one flag, as argparse's nargs="+"
// or "*" does (--lora-modules a b c); they are rewritten to repeated flags.
var multiFlags = map[string]bool{"lora-modules": true, "metadata": true, "header": true, "goodput": true}

// normalizeArgs accepts vllm's spellings: "--a_b" for "--a-b" (vllm's
// FlexibleArgumentParser), a unique prefix of a flag's name (argparse's
// allow_abbrev, on in vllm: "--num-prompt" is "--num-prompts"), and several
// values after a multi-value flag. names are the flags defined.
func normalizeArgs(args []string, names []string) ([]string, error) {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			out = append(out, args[i:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || isNumber(a) {
			out = append(out, a) // a value (a negative number too)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		name, err := expandName(strings.ReplaceAll(name, "_", "-"), names)
		if err != nil {
			return nil, err
		}
		if hasVal {
			out = append(out, "--"+name+"="+val)
			continue
		}
		if !multiFlags[name] {
			out = append(out, "--"+name)
			continue
		}
		n := 0
		for i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			i++
			n++
			out = append(out, "--"+name+"="+args[i])
		}
		if n == 0 {
			out = append(out, "--"+name) // flag reports the missing value
		}
	}
	return out, nil
}

// expandName is name itself when it is a flag, else the one flag it is a
// prefix of; several are an error, none is left to the flag package.
func expandName(name string, names []string) (string, error) {
	if name == "h" || name == "help" {
		return name, nil // the flag package's help
	}
	var matches []string
	for _, n := range names {
		if n == name {
			return name, nil
		}
		if strings.HasPrefix(n, name) {
			matches = append(matches, "--"+n)
		}
	}
	if len(matches) > 1 {
		return "", fmt.Errorf("ambiguous option: --%s could match %s", name, strings.Join(matches, ", "))
	}
	if len(matches) == 1 {
		return matches[0][2:], nil
	}
	return name, nil
}

func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }
