// Package archtest holds atrelay's architecture test: the allowed import
// directions between its packages, checked against `go list`. It has no
// code of its own; run it with `go test ./internal/archtest/`.
package archtest
