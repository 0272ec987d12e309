package kubetest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/atrelay/atrelay/internal/config"
)

// The kit's paths, from this directory.
const (
	repoRoot       = "../.."
	kubernetesDir  = "../kubernetes"
	baseDir        = "base"
	productionDir  = "overlays/production"
	dockerfilePath = "../../Dockerfile"
	goModPath      = "../../go.mod"
)

// kustomizations are the directories under kubernetesDir that render a
// deployable set.
var kustomizations = []string{baseDir, productionDir}

// kit is one rendered kustomization, every object decoded strictly into
// its API type (KEDA's as unstructured, their keys checked by the checks).
type kit struct {
	name         string
	kinds        []string // "Kind/name" in render order
	deployments  []*appsv1.Deployment
	configMaps   map[string]*corev1.ConfigMap // by rendered (hashed) name
	services     []*corev1.Service
	pdbs         []*policyv1.PodDisruptionBudget
	podMonitors  []*monitoringv1.PodMonitor
	namespaces   []*corev1.Namespace
	scaled       []*unstructured.Unstructured
	triggerAuths map[string]*unstructured.Unstructured
	secrets      int

	// From the Deployment's one container, once load has found them.
	deploy     *appsv1.Deployment
	container  *corev1.Container
	env        map[string]envSource
	configPath string // --config
	configYAML []byte // the mounted ConfigMap's file
	cfg        *config.Config
	cfgErr     error // config.Parse's, with the container's environment
}

// envSource is where a container's environment variable comes from.
type envSource struct {
	value  string                    // what the pod would see; a dummy for a Secret
	secret *corev1.SecretKeySelector // set when it comes from a Secret
}

// renderKit renders dir (relative to root in fsys) and decodes it.
func renderKit(fsys filesys.FileSystem, root, dir string) (*kit, error) {
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fsys, path.Join(root, dir))
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	k := &kit{name: dir, configMaps: map[string]*corev1.ConfigMap{}, triggerAuths: map[string]*unstructured.Unstructured{}}
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			return nil, err
		}
		if err := k.decode(r.GetApiVersion(), r.GetKind(), y); err != nil {
			return nil, fmt.Errorf("%s: %s/%s: %w", dir, r.GetKind(), r.GetName(), err)
		}
		k.kinds = append(k.kinds, r.GetKind()+"/"+r.GetName())
	}
	k.derive()
	return k, nil
}

// decode decodes one object strictly: an unknown or duplicate field is an
// error, as the API server's strict field validation would make it.
func (k *kit) decode(apiVersion, kind string, y []byte) error {
	strict := func(v any) error { return yaml.UnmarshalStrict(y, v) }
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		var d appsv1.Deployment
		k.deployments = append(k.deployments, &d)
		return strict(&d)
	case "v1 ConfigMap":
		var c corev1.ConfigMap
		if err := strict(&c); err != nil {
			return err
		}
		k.configMaps[c.Name] = &c
	case "v1 Service":
		var s corev1.Service
		k.services = append(k.services, &s)
		return strict(&s)
	case "v1 Namespace":
		var n corev1.Namespace
		k.namespaces = append(k.namespaces, &n)
		return strict(&n)
	case "v1 Secret":
		k.secrets++ // checkKinds refuses it: secrets are created apart
	case "policy/v1 PodDisruptionBudget":
		var p policyv1.PodDisruptionBudget
		k.pdbs = append(k.pdbs, &p)
		return strict(&p)
	case "monitoring.coreos.com/v1 PodMonitor":
		var p monitoringv1.PodMonitor
		k.podMonitors = append(k.podMonitors, &p)
		return strict(&p)
	case "keda.sh/v1alpha1 ScaledObject", "keda.sh/v1alpha1 TriggerAuthentication":
		// No Go type: duplicate keys are refused here, unknown keys by
		// checkScaledObject; numbers become int64s, as the API's.
		j, err := yaml.YAMLToJSONStrict(y)
		if err != nil {
			return err
		}
		var u unstructured.Unstructured
		if err := u.UnmarshalJSON(j); err != nil {
			return err
		}
		if kind == "ScaledObject" {
			k.scaled = append(k.scaled, &u)
		} else {
			k.triggerAuths[u.GetName()] = &u
		}
	default:
		return fmt.Errorf("no check knows %s %s: add it to kit.decode and to the checks", apiVersion, kind)
	}
	return nil
}

// derive finds the container, its environment and its configuration, and
// loads that configuration as atrelay would. What it cannot find, the
// checks report.
func (k *kit) derive() {
	if len(k.deployments) != 1 || len(k.deployments[0].Spec.Template.Spec.Containers) != 1 {
		return
	}
	k.deploy = k.deployments[0]
	k.container = &k.deploy.Spec.Template.Spec.Containers[0]
	k.env = map[string]envSource{}
	for _, e := range k.container.Env {
		var s envSource
		switch {
		case e.ValueFrom == nil:
			s.value = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			s.secret = e.ValueFrom.SecretKeyRef
			s.value = "dummy-" + s.secret.Name + "-" + s.secret.Key
		case e.ValueFrom.ConfigMapKeyRef != nil:
			if cm := k.configMaps[e.ValueFrom.ConfigMapKeyRef.Name]; cm != nil {
				s.value = cm.Data[e.ValueFrom.ConfigMapKeyRef.Key]
			}
		case e.ValueFrom.ResourceFieldRef != nil:
			s.value = "536870912" // 512Mi
		default:
			s.value = "dummy"
		}
		k.env[e.Name] = s
	}
	for i, a := range k.container.Args {
		if a == "--config" && i+1 < len(k.container.Args) {
			k.configPath = k.container.Args[i+1]
		} else if v, ok := strings.CutPrefix(a, "--config="); ok {
			k.configPath = v
		}
	}
	k.configYAML = k.mountedFile(k.configPath)
	if k.configYAML == nil {
		return
	}
	k.cfg, k.cfgErr = config.Parse(k.configYAML, func(name string) (string, bool) {
		s, ok := k.env[name]
		return s.value, ok
	})
}

// mountedFile returns the content of file p in the container, when a
// ConfigMap volume of the render provides it.
func (k *kit) mountedFile(p string) []byte {
	if p == "" {
		return nil
	}
	for _, vm := range k.container.VolumeMounts {
		rel, err := filepath.Rel(vm.MountPath, p)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		if vm.SubPath != "" {
			rel = vm.SubPath
		}
		for _, v := range k.deploy.Spec.Template.Spec.Volumes {
			if v.Name != vm.Name || v.ConfigMap == nil {
				continue
			}
			if cm := k.configMaps[v.ConfigMap.Name]; cm != nil {
				if data, ok := cm.Data[rel]; ok {
					return []byte(data)
				}
			}
		}
	}
	return nil
}

// loadKit renders a kustomization of the real kit.
func loadKit(t *testing.T, dir string) *kit {
	t.Helper()
	k, err := renderKit(filesys.MakeFsOnDisk(), kubernetesDir, dir)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// mutatedKit copies deploy/kubernetes into memory, replaces old by new in
// file (exactly once: a mutation that no longer applies fails) and renders
// dir. A decoding error is returned as the kit's error.
func mutatedKit(t *testing.T, dir, file, old, new string) (*kit, error) {
	t.Helper()
	mem := filesys.MakeFsInMemory()
	const root = "/kubernetes"
	err := filepath.WalkDir(kubernetesDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(kubernetesDir, p)
		if filepath.ToSlash(rel) == file {
			if n := strings.Count(string(data), old); n != 1 {
				return fmt.Errorf("mutation: %q occurs %d times in %s, want once", old, n, file)
			}
			data = []byte(strings.Replace(string(data), old, new, 1))
		}
		dst := path.Join(root, filepath.ToSlash(rel))
		if err := mem.MkdirAll(path.Dir(dst)); err != nil {
			return err
		}
		return mem.WriteFile(dst, data)
	})
	if err != nil {
		t.Fatal(err)
	}
	return renderKit(mem, root, dir)
}

// problems collects a check's findings.
type problems []error

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Errorf(format, args...)) }
func (p problems) err() error                      { return errors.Join(p...) }
