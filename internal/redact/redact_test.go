package redact_test

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"strings"
	"testing"

	"github.com/atrelay/atrelay/internal/redact"
)

// TestURL covers one URL at a time, parseable or not.
// Mutation caught (tried): url.URL.Redacted's form (user:xxxxx, keeping
// the user name, an API key on hosted registries) fails the first rows;
// without the fallback for unparseable URLs "p/w" and "p#w" leak.
func TestURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"http://user:password@registry:8081", "http://REDACTED@registry:8081"},
		{"https://user@registry/api?x=1", "https://REDACTED@registry/api?x=1"},
		{"http://u:p%40ss@h:1/", "http://REDACTED@h:1/"},
		{"http://u:p@[::1]:8081", "http://REDACTED@[::1]:8081"},
		{"http://registry:8081", "http://registry:8081"},
		{"http://registry/users/a@b", "http://registry/users/a@b"},
		{"", ""},
		// Unparseable: everything up to the last '@' goes.
		{"http://u:p/w@h", "http://REDACTED@h"},
		{"http://u:p#w@h/x", "http://REDACTED@h/x"},
		{"user:pw@host:8081", "REDACTED@host:8081"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := redact.URL(tt.in); got != tt.want {
				t.Errorf("URL(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestString covers URLs inside free text, as errors quote them.
// Mutations caught (each tried): resuming the search at the end of the
// authority instead of right after "://" misses the URL in
// "x://http://u:p@h"; IndexByte instead of LastIndexByte for '@' leaks the
// tail of a password with a raw '@'; not ending the authority at '"'
// redacts across the JSON row into the e-mail address.
func TestString(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"sr error, connection refused",
			`confluent schema id 7: registry: unable to GET "http://user:hunter22@127.0.0.1:1/schemas/ids/7": Get "http://user:***@127.0.0.1:1/schemas/ids/7": dial tcp 127.0.0.1:1: connect: connection refused`,
			`confluent schema id 7: registry: unable to GET "http://REDACTED@127.0.0.1:1/schemas/ids/7": Get "http://REDACTED@127.0.0.1:1/schemas/ids/7": dial tcp 127.0.0.1:1: connect: connection refused`},
		{"raw @ in password", "see http://u:p@ss@h/x", "see http://REDACTED@h/x"},
		{"end of string", "http://u:p@h", "http://REDACTED@h"},
		{"query and fragment end it", "http://h?u=a@b http://h#a@b", "http://h?u=a@b http://h#a@b"},
		{"other schemes", "kafka+sasl://k:s@b:9092,b2", "kafka+sasl://REDACTED@b:9092,b2"},
		{"ipv6", "http://u:p@[::1]:1/x", "http://REDACTED@[::1]:1/x"},
		{"json", `{"url":"http://reg:8081","mail":"a@b.c"}`, `{"url":"http://reg:8081","mail":"a@b.c"}`},
		{"colon before the scheme", "x://http://u:p@h", "x://http://REDACTED@h"},
		{"after an authority without @", "a://b http://u:p@h", "a://b http://REDACTED@h"},
		{"no scheme: an e-mail address", "mail user:pw@host", "mail user:pw@host"},
		{"already redacted", "http://REDACTED@h", "http://REDACTED@h"},
		{"nothing", "dial tcp: connection refused", "dial tcp: connection refused"},
		{"empty", "", ""},
		{"only the separator", "://@", "://REDACTED@"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := redact.String(tt.in); got != tt.want {
				t.Errorf("String(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestStringDoesNotAllocate: text without userinfo is returned as is.
// Mutation caught (tried): growing the builder before the loop instead of
// at the first match allocates for every row.
func TestStringDoesNotAllocate(t *testing.T) {
	for _, s := range []string{
		"dial tcp 127.0.0.1:1: connect: connection refused",
		"mail a@b.c",
		`Get "http://127.0.0.1:1/schemas/ids/7": EOF`,
		`Get "http://127.0.0.1:1/schemas/ids/7": mail a@b.c`,
	} {
		if n := testing.AllocsPerRun(100, func() { _ = redact.String(s) }); n != 0 {
			t.Errorf("String(%q): %v allocations", s, n)
		}
	}
}

// TestError: the message is redacted, the chain is not.
// Mutation caught (tried): without Unwrap, errors.Is/As fail.
func TestError(t *testing.T) {
	pe := &fs.PathError{Op: "open", Path: "x", Err: fs.ErrNotExist}
	err := fmt.Errorf("unable to GET %q: %w", "http://u:secret@h/x", pe)
	red := redact.Error(err)
	if got, want := red.Error(), `unable to GET "http://REDACTED@h/x": open x: file does not exist`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var got *fs.PathError
	if !errors.Is(red, fs.ErrNotExist) || !errors.As(red, &got) || got != pe {
		t.Errorf("errors.Is/As lost the chain of %v", red)
	}
	if redact.Error(nil) != nil {
		t.Error("Error(nil) != nil")
	}
	if clean := errors.New("boom"); redact.Error(clean) != clean {
		t.Error("a clean error was wrapped")
	}
}

// FuzzString: String never panics, is idempotent, and removes the password
// of a URL whatever text surrounds it.
// Mutations caught (tried): stopping the authority at ':' as well leaks
// the password; resuming the search at the authority's end misses a URL
// after a prefix such as "a://b" (seed 3).
func FuzzString(f *testing.F) {
	f.Add("", "user", "hunter22", "registry:8081", "")
	f.Add(`Get "`, "u", "p@ss:w0rd", "127.0.0.1:1", `": dial tcp`)
	f.Add("a://b", "u", "secret", "h", "@x")
	f.Add("://", "", "passw", "[::1]:1", "/x?y=a@b")
	f.Add("x", "u\"", "pa\"ss/?#", "h", "")
	f.Fuzz(func(t *testing.T, prefix, user, pass, host, suffix string) {
		u := (&url.URL{Scheme: "http", User: url.UserPassword(user, pass), Host: host, Path: "/schemas"}).String()
		in := prefix + u + suffix
		out := redact.String(in)
		if again := redact.String(out); again != out {
			t.Fatalf("not idempotent: %q -> %q -> %q", in, out, again)
		}
		// The password as it appears in the text, escaped.
		ui := url.UserPassword(user, pass).String()
		esc := ui[strings.IndexByte(ui, ':')+1:]
		clean := prefix + strings.Replace(u, ui+"@", "REDACTED@", 1) + suffix
		if len(esc) < 4 || strings.Contains(clean, esc) {
			return // the password cannot be told from the rest of the text
		}
		if strings.Contains(out, esc) {
			t.Fatalf("password %q survives:\n in %q\nout %q", esc, in, out)
		}
	})
}

func ExampleString() {
	fmt.Println(redact.String(`unable to GET "http://svc:hunter2@registry:8081/schemas/ids/7": connection refused`))
	// Output: unable to GET "http://REDACTED@registry:8081/schemas/ids/7": connection refused
}

func ExampleURL() {
	fmt.Println(redact.URL("https://api-key:api-secret@psrc-123.confluent.cloud"))
	// Output: https://REDACTED@psrc-123.confluent.cloud
}
