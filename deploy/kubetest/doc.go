// Package kubetest checks atrelay's deploy kit — the Dockerfile, the
// Kustomize base and overlays in deploy/kubernetes, and `make build` — as
// tests only. It is a module of its own, so that the Kubernetes and
// BuildKit modules it needs stay out of the service's go.mod; it imports
// the service's configuration loader through a replace of the parent
// module, so that the ConfigMap is checked by the code that will read it.
package kubetest
