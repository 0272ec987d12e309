package kubetest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// image is what the Dockerfile promises about the image it builds.
type image struct {
	uid        int64  // the final stage's USER
	configPath string // CMD's --config
}

// parseDockerfile parses with BuildKit's own parser; a lint warning is an
// error.
func parseDockerfile(src []byte) ([]instructions.Stage, error) {
	res, err := parser.Parse(bytes.NewReader(src))
	if err != nil {
		return nil, err
	}
	var warnings []string
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, _ []parser.Range) {
		warnings = append(warnings, rule+": "+msg)
	}})
	stages, _, err := instructions.Parse(res.AST, lint)
	if err != nil {
		return nil, err
	}
	for _, w := range res.Warnings {
		warnings = append(warnings, w.Short)
	}
	if len(warnings) > 0 {
		return nil, fmt.Errorf("lint: %s", strings.Join(warnings, "; "))
	}
	return stages, nil
}

// goDirective returns go.mod's `go` version.
func goDirective(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "go "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// checkDockerfile: a build stage on golang at go.mod's Go version that
// runs `make build` with CGO_ENABLED=0, and a final stage on distroless
// static that needs no shell: no RUN, ENTRYPOINT and CMD in exec form, a
// numeric non-root USER, the binary copied from the build stage.
func checkDockerfile(src []byte, goVersion string) (image, error) {
	var img image
	stages, err := parseDockerfile(src)
	if err != nil {
		return img, err
	}
	if len(stages) < 2 {
		return img, fmt.Errorf("%d stages, want a build stage and a final one", len(stages))
	}
	var p problems
	build, final := stages[0], stages[len(stages)-1]

	if want := "golang:" + goVersion; build.BaseName != want && !strings.HasPrefix(build.BaseName, want+"-") {
		p.add("build stage FROM %s: want %s (go.mod's go line)", build.BaseName, want)
	}
	var cgoOff, makeBuild bool
	for _, c := range build.Commands {
		switch c := c.(type) {
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				if kv.Key == "CGO_ENABLED" {
					cgoOff = kv.Value == "0"
				}
			}
		case *instructions.RunCommand:
			if strings.Contains(strings.Join(c.CmdLine, " "), "make build") {
				makeBuild = true
			}
		}
	}
	if !cgoOff {
		p.add("build stage: want ENV CGO_ENABLED=0 (a static binary: the final stage has no libc)")
	}
	if !makeBuild {
		p.add("build stage: want a RUN of `make build`, so that the image's binary is built as the Makefile builds it")
	}

	if !strings.HasPrefix(final.BaseName, "gcr.io/distroless/static") {
		p.add("final stage FROM %s: want gcr.io/distroless/static-… (no shell, no libc)", final.BaseName)
	}
	var user string
	var copied []string
	for _, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.RunCommand:
			p.add("final stage: RUN %s: distroless has no shell to run it", strings.Join(c.CmdLine, " "))
		case *instructions.UserCommand:
			user = c.User
		case *instructions.CopyCommand:
			if c.From == build.Name {
				copied = append(copied, c.DestPath)
			}
		case *instructions.EntrypointCommand:
			if c.PrependShell || !slices.Equal(c.CmdLine, []string{"/atrelay", "run"}) {
				p.add("ENTRYPOINT %q (shell form %t): want exec form [\"/atrelay\", \"run\"]", c.CmdLine, c.PrependShell)
			}
			if len(c.CmdLine) == 0 || !slices.Contains(copied, c.CmdLine[0]) {
				p.add("ENTRYPOINT %s: not copied from the build stage", c.CmdLine[0])
			}
		case *instructions.CmdCommand:
			if c.PrependShell || len(c.CmdLine) != 2 || c.CmdLine[0] != "--config" {
				p.add("CMD %q (shell form %t): want exec form [\"--config\", PATH]", c.CmdLine, c.PrependShell)
			} else {
				img.configPath = c.CmdLine[1]
			}
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.ParseInt(uid, 10, 64); err != nil || n == 0 {
		p.add("final stage USER %q: want a numeric non-root uid (Kubernetes' runAsNonRoot cannot verify a name)", user)
	} else {
		img.uid = n
	}
	return img, p.err()
}

// TestDockerfile checks the Dockerfile, and that the Deployments run its
// image as it is built: as its USER, with its configuration path.
//
// Mutations caught (one each, below): the build stage on another Go; cgo
// left on; `go build` instead of `make build`; a Debian base; a RUN in the
// final stage; USER root; a shell-form ENTRYPOINT.
func TestDockerfile(t *testing.T) {
	src, err := os.ReadFile(dockerfilePath)
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(goModPath)
	if err != nil {
		t.Fatal(err)
	}
	goVersion := goDirective(gomod)
	img, err := checkDockerfile(src, goVersion)
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range kustomizations {
		k := loadKit(t, dir)
		if k.container == nil {
			t.Fatalf("%s: no container", dir)
		}
		if k.configPath != img.configPath {
			t.Errorf("%s: --config %s, but the image's CMD says %s", dir, k.configPath, img.configPath)
		}
		psc := k.deploy.Spec.Template.Spec.SecurityContext
		if psc == nil || psc.RunAsUser == nil || *psc.RunAsUser != img.uid {
			t.Errorf("%s: runAsUser %v, want the image's USER %d", dir, psc.RunAsUser, img.uid)
		}
	}

	mutations := []struct{ name, old, new, want string }{
		{"another Go", "golang:" + goVersion + " AS build", "golang:1.25.0 AS build", "go.mod's go line"},
		{"cgo on", "ENV CGO_ENABLED=0", "ENV CGO_ENABLED=1", "CGO_ENABLED=0"},
		{"go build", "make build BIN=/out/atrelay", "go build -o /out/atrelay ./cmd/atrelay #", "make build"},
		{"a Debian base", "FROM gcr.io/distroless/static-debian12:nonroot", "FROM debian:12-slim", "distroless"},
		{"a RUN in the final stage", "USER 65532:65532", "RUN chmod 0555 /atrelay\nUSER 65532:65532", "no shell"},
		{"root", "USER 65532:65532", "USER root", "non-root"},
		{"shell form", `ENTRYPOINT ["/atrelay", "run"]`, "ENTRYPOINT /atrelay run", "exec form"},
	}
	for _, m := range mutations {
		t.Run(m.name, func(t *testing.T) {
			if strings.Count(string(src), m.old) != 1 {
				t.Fatalf("mutation: %q is not once in the Dockerfile", m.old)
			}
			_, err := checkDockerfile([]byte(strings.Replace(string(src), m.old, m.new, 1)), goVersion)
			if err == nil || !strings.Contains(err.Error(), m.want) {
				t.Fatalf("want an error saying %q, got %v", m.want, err)
			}
		})
	}
}
