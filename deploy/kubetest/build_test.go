package kubetest

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMakeBuildStatic runs `make build` (the Makefile's own command, the
// one the Dockerfile runs) and checks that the binary is static — no
// program interpreter, no shared library — so that it runs on distroless
// static, and that `--version` reports the commit and date given to it.
//
// Mutations caught (tried by hand, each costs a build): CGO_ENABLED=0
// taken out of the Makefile (the net package then links libc: PT_INTERP
// and libc.so.6 appear); the -X flags taken out (the commit reads
// "unknown").
func TestMakeBuildStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the service (-short)")
	}
	bin := filepath.Join(t.TempDir(), "atrelay")
	const commit, date = "0123456789abcdef0123456789abcdef01234567", "2026-01-02T03:04:05Z"
	gobin := os.Getenv("GO")
	if gobin == "" {
		gobin = "go"
	}
	cmd := exec.Command("make", "-C", repoRoot, "--no-print-directory", "build",
		"GO="+gobin, "BIN="+bin, "COMMIT="+commit, "DATE="+date)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("the binary has a program interpreter (PT_INTERP): it is dynamically linked")
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	if len(libs) > 0 {
		t.Errorf("the binary needs shared libraries (DT_NEEDED): %v", libs)
	}

	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("atrelay --version: %v\n%s", err, out)
	}
	for _, want := range []string{"commit   " + commit + "\n", "built    " + date + "\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("atrelay --version does not say %q:\n%s", strings.TrimSpace(want), out)
		}
	}
}
