package kubetest

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestKustomizations renders the base and each overlay, decodes every
// object strictly into its API type (an unknown field such as a misspelt
// `terminationGracePeriodSecond` fails the render), and runs every check.
func TestKustomizations(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			k := loadKit(t, dir)
			t.Logf("%s renders %s", dir, strings.Join(k.kinds, ", "))
			for _, c := range checks {
				t.Run(c.name, func(t *testing.T) {
					if err := c.fn(k); err != nil {
						t.Error(err)
					}
				})
			}
		})
	}
}

// TestProductionOverlay: production runs in its own namespace, which
// enforces the restricted Pod Security Standard, with more resources and
// more members than the base. Mutations caught: the resources patch
// dropped; the namespace left out of one object.
func TestProductionOverlay(t *testing.T) {
	base, prod := loadKit(t, baseDir), loadKit(t, productionDir)
	if err := checkProduction(base, prod); err != nil {
		t.Error(err)
	}
}

// checkProduction compares the production overlay with the base.
func checkProduction(base, prod *kit) error {
	var p problems
	const ns = "atrelay"
	var found bool
	for _, n := range prod.namespaces {
		if n.Name == ns {
			found = true
			if n.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
				p.add("Namespace %s: want pod-security.kubernetes.io/enforce=restricted", ns)
			}
		}
	}
	if !found {
		p.add("no Namespace %s", ns)
	}
	objs := []interface{ GetNamespace() string }{}
	for _, d := range prod.deployments {
		objs = append(objs, d)
	}
	for _, c := range prod.configMaps {
		objs = append(objs, c)
	}
	for _, s := range prod.services {
		objs = append(objs, s)
	}
	for _, d := range prod.pdbs {
		objs = append(objs, d)
	}
	for _, m := range prod.podMonitors {
		objs = append(objs, m)
	}
	for _, s := range prod.scaled {
		objs = append(objs, s)
	}
	for _, a := range prod.triggerAuths {
		objs = append(objs, a)
	}
	for _, o := range objs {
		if o.GetNamespace() != ns {
			p.add("%T in namespace %q, want %q", o, o.GetNamespace(), ns)
		}
	}
	if base.container == nil || prod.container == nil {
		p.add("no container")
		return p.err()
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		b, q := base.container.Resources.Limits[r], prod.container.Resources.Limits[r]
		if q.Cmp(b) <= 0 {
			p.add("limits.%s %s: want more than the base's %s", r, q.String(), b.String())
		}
		b, q = base.container.Resources.Requests[r], prod.container.Resources.Requests[r]
		if q.Cmp(b) <= 0 {
			p.add("requests.%s %s: want more than the base's %s", r, q.String(), b.String())
		}
	}
	minOf := func(k *kit) int64 {
		if len(k.scaled) != 1 {
			return 0
		}
		n, _, _ := unstructured.NestedInt64(k.scaled[0].Object, "spec", "minReplicaCount")
		return n
	}
	if minOf(prod) <= minOf(base) || minOf(prod) < 2 {
		p.add("minReplicaCount %d: want more members than the base's %d, and at least 2", minOf(prod), minOf(base))
	}
	return p.err()
}

// TestChecksCatchMutations makes, on a copy of deploy/kubernetes, each
// mistake a check is there to catch, and requires that check to report it
// (or, for a misspelt field, the strict decoding to refuse it).
func TestChecksCatchMutations(t *testing.T) {
	byName := map[string]func(*kit) error{}
	for _, c := range checks {
		byName[c.name] = c.fn
	}
	tests := []struct {
		name, dir, file, old, new string
		check                     string // "" means the render or decoding fails
		want                      string
	}{
		{"misspelt Deployment field", baseDir, "base/deployment.yaml",
			"terminationGracePeriodSeconds: 75", "terminationGracePeriodSecond: 75", "", "unknown field"},
		{"misspelt PodMonitor field", baseDir, "base/podmonitor.yaml",
			"podMetricsEndpoints:", "podMetricEndpoints:", "", "unknown field"},
		{"Secret in the kustomization", baseDir, "base/kustomization.yaml",
			"\nimages:\n", "\nsecretGenerator:\n  - name: atrelay-kafka\n    literals: [username=atrelay, password=hunter2]\n\nimages:\n", "kinds", "Secrets in the kustomization"},
		{"${VAR} the container lacks", baseDir, "base/atrelay.yaml",
			`password: "${KAFKA_PASSWORD}"`, `password: "${KAFKA_PASSWD}"`, "config", "KAFKA_PASSWD"},
		{"broker without a port", productionDir, "overlays/production/kustomization.yaml",
			"KAFKA_BOOTSTRAP=kafka-prod-bootstrap.kafka.svc:9093", "KAFKA_BOOTSTRAP=kafka-prod-bootstrap.kafka.svc", "config", "brokers[0]"},
		{"probe port changed", baseDir, "base/deployment.yaml",
			"containerPort: 8080", "containerPort: 8081", "ports", "health_listen"},
		{"metrics port changed", baseDir, "base/atrelay.yaml",
			`metrics_listen: ":9464"`, `metrics_listen: ":9465"`, "ports", "metrics"},
		{"listener on loopback", baseDir, "base/atrelay.yaml",
			`health_listen: ":8080"`, `health_listen: "127.0.0.1:8080"`, "ports", "127.0.0.1"},
		{"PodMonitor on another port", baseDir, "base/podmonitor.yaml",
			"- port: metrics", "- port: health", "ports", "PodMonitor"},
		{"shutdown_timeout raised alone", baseDir, "base/atrelay.yaml",
			"shutdown_timeout: 30s", "shutdown_timeout: 45s", "grace period", "terminationGracePeriodSeconds 75s"},
		{"grace period shortened", baseDir, "base/deployment.yaml",
			"terminationGracePeriodSeconds: 75", "terminationGracePeriodSeconds: 60", "grace period", "want more than"},
		{"literal password in the ConfigMap", baseDir, "base/atrelay.yaml",
			`password: "${SCHEMA_REGISTRY_PASSWORD}"`, `password: "hunter2"`, "secrets", "codec.schema_registry.password: a literal"},
		{"password as a plain env value", baseDir, "base/deployment.yaml",
			"- name: KAFKA_PASSWORD\n              valueFrom:\n                secretKeyRef:\n                  name: atrelay-kafka\n                  key: password",
			"- name: KAFKA_PASSWORD\n              value: hunter2", "secrets", "KAFKA_PASSWORD"},
		{"ScaledObject on another topic", baseDir, "base/scaledobject.yaml",
			"topic: purchasely.subscription-events", "topic: purchasely.events", "scaled object", "kafka.topic"},
		{"ScaledObject on another group", baseDir, "base/scaledobject.yaml",
			"consumerGroup: atrelay", "consumerGroup: atrelay-v2", "scaled object", "kafka.group"},
		{"more replicas than partitions", baseDir, "base/scaledobject.yaml",
			"maxReplicaCount: 12", "maxReplicaCount: 20", "scaled object", "partition count"},
		{"KEDA without TLS", baseDir, "base/scaledobject.yaml",
			"tls: enable", "tls: disable", "scaled object", "kafka.tls.enabled"},
		{"misspelt trigger key", baseDir, "base/scaledobject.yaml",
			`lagThreshold: "10000"`, `lagTreshold: "10000"`, "scaled object", "lagTreshold"},
		{"KEDA with other credentials", baseDir, "base/scaledobject.yaml",
			"      name: atrelay-kafka\n      key: password", "      name: keda-kafka\n      key: password", "scaled object", "password"},
		{"replicas in the Deployment", baseDir, "base/deployment.yaml",
			"spec:\n  selector:", "spec:\n  replicas: 2\n  selector:", "scaled object", "replicas"},
		{"writable root filesystem", baseDir, "base/deployment.yaml",
			"readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "hardening", "readOnlyRootFilesystem"},
		{"capabilities kept", baseDir, "base/deployment.yaml",
			`drop: ["ALL"]`, `drop: ["NET_RAW"]`, "hardening", "capabilities"},
		{"GOMEMLIMIT set", baseDir, "base/deployment.yaml",
			"          env:\n", "          env:\n            - name: GOMEMLIMIT\n              value: 256MiB\n", "hardening", "GOMEMLIMIT"},
		{"no memory limit", baseDir, "base/deployment.yaml",
			"              memory: 256Mi\n", "", "hardening", "limits.memory"},
		{"PDB selects other pods", baseDir, "base/pdb.yaml",
			"      app.kubernetes.io/name: atrelay", "      app.kubernetes.io/name: atrelay-v2", "selectors", "PodDisruptionBudget"},
		{"PDB allows two", baseDir, "base/pdb.yaml",
			"maxUnavailable: 1", "maxUnavailable: 2", "selectors", "maxUnavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := mutatedKit(t, tt.dir, tt.file, tt.old, tt.new)
			if tt.check != "" && err == nil {
				err = byName[tt.check](k)
			}
			if err == nil {
				t.Fatalf("the mutation went unnoticed")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("the error does not say %q:\n%v", tt.want, err)
			}
			t.Logf("caught: %v", err)
		})
	}
}

// TestProductionMutations: the overlay's own mistakes.
func TestProductionMutations(t *testing.T) {
	base := loadKit(t, baseDir)
	tests := []struct{ name, old, new, want string }{
		{"resources patch dropped", "      limits:\n                    cpu: \"2\"\n                    memory: 512Mi", "      limits:\n                    cpu: \"2\"\n                    memory: 256Mi", "limits.memory"},
		{"namespace left out", "namespace: atrelay\n\nresources:", "resources:", "namespace"},
		{"no more members", "value: 3", "value: 1", "minReplicaCount"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prod, err := mutatedKit(t, productionDir, "overlays/production/kustomization.yaml", tt.old, tt.new)
			if err == nil {
				err = checkProduction(base, prod)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("want an error saying %q, got %v", tt.want, err)
			}
		})
	}
}
