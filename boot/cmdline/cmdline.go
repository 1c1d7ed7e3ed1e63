// Package cmdline splits a kernel command line the way the kernel itself
// does (lib/cmdline.c next_arg and kernel/params.c parse_args) and reads the
// parameters squashportage's PID 1 acts on.
//
// u-root's pkg/cmdline is not used: it keeps only the last of repeated keys
// (squashportage= is repeatable) and reads /proc/cmdline only, so it cannot be
// tested with strings.
package cmdline

import (
	"strings"
)

// Param is one word of the command line. Value is empty and HasValue false
// for a bare flag such as "ro".
type Param struct {
	Key      string
	Value    string
	HasValue bool
}

// Cmdline is a parsed command line: the parameters before "--" in order,
// repeated keys kept, and the words after "--", which the kernel hands to
// init untouched.
type Cmdline struct {
	Params   []Param
	InitArgs []string
}

// Parse splits s like the kernel. Double quotes group words with spaces;
// the kernel strips a quote that opens the word or the value and the quote
// that closes the word, and keeps any other quote.
func Parse(s string) Cmdline {
	var c Cmdline
	rest := skipSpaces(s)
	for rest != "" {
		var p Param
		p, rest = nextArg(rest)
		if !p.HasValue && p.Key == "--" {
			// The kernel splits what follows into argv words for init
			// with the same rules, so reuse nextArg and rejoin key=value.
			for rest != "" {
				var w Param
				w, rest = nextArg(rest)
				c.InitArgs = append(c.InitArgs, w.word())
			}
			break
		}
		c.Params = append(c.Params, p)
	}
	return c
}

// word rebuilds the argv word the kernel would pass for p.
func (p Param) word() string {
	if p.HasValue {
		return p.Key + "=" + p.Value
	}
	return p.Key
}

// nextArg mirrors the kernel's next_arg, including its quirks: the first '='
// splits key and value even inside quotes, and only a quote opening the word
// or the value, and a quote ending the word, are removed.
func nextArg(args string) (Param, string) {
	inQuote, quoted := false, false
	if strings.HasPrefix(args, `"`) {
		args = args[1:]
		inQuote, quoted = true, true
	}
	equals := -1
	i := 0
	for ; i < len(args); i++ {
		if isSpace(args[i]) && !inQuote {
			break
		}
		if equals < 0 && args[i] == '=' {
			equals = i
		}
		if args[i] == '"' {
			inQuote = !inQuote
		}
	}
	word, rest := args[:i], ""
	if i < len(args) {
		rest = args[i+1:]
	}
	var p Param
	if equals < 0 {
		p.Key = word
		if quoted {
			p.Key = strings.TrimSuffix(p.Key, `"`)
		}
	} else {
		p.Key, p.Value, p.HasValue = word[:equals], word[equals+1:], true
		if strings.HasPrefix(p.Value, `"`) {
			p.Value = strings.TrimSuffix(p.Value[1:], `"`)
		} else if quoted {
			p.Value = strings.TrimSuffix(p.Value, `"`)
		}
	}
	return p, skipSpaces(rest)
}

func isSpace(b byte) bool {
	// The kernel's isspace in the C locale: space, \t \n \v \f \r.
	return b == ' ' || (b >= '\t' && b <= '\r')
}

func skipSpaces(s string) string {
	i := 0
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	return s[i:]
}

// Get returns the value of the last occurrence of key, as the kernel's own
// handlers see it (a later root= overrides an earlier one).
func (c Cmdline) Get(key string) (string, bool) {
	for i := len(c.Params) - 1; i >= 0; i-- {
		if c.Params[i].Key == key {
			return c.Params[i].Value, true
		}
	}
	return "", false
}

// All returns every value given for key, in command-line order.
func (c Cmdline) All(key string) []string {
	var vs []string
	for _, p := range c.Params {
		if p.Key == key {
			vs = append(vs, p.Value)
		}
	}
	return vs
}

// Has reports whether key occurs at all, with or without a value.
func (c Cmdline) Has(key string) bool {
	_, ok := c.Get(key)
	return ok
}

// Last returns whichever of the given keys occurs last, or "" if none does:
// for pairs such as ro/rw where the later word wins.
func (c Cmdline) Last(keys ...string) string {
	for i := len(c.Params) - 1; i >= 0; i-- {
		for _, k := range keys {
			if c.Params[i].Key == k {
				return k
			}
		}
	}
	return ""
}
