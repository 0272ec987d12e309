package kubetest

import (
	"fmt"
	"net"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/atrelay/atrelay/internal/config"
	"github.com/atrelay/atrelay/internal/secret"
)

// Figures of the service that the manifests must agree with.
const (
	// topicPartitions is the partition count the kit is sized for: the
	// ScaledObject's maxReplicaCount (a member beyond it owns nothing).
	topicPartitions = 12
	// rebalanceTimeout is internal/relay's (kgo's default): a revoke
	// drains for min(shutdown_timeout, rebalanceTimeout/2).
	rebalanceTimeout = 60 * time.Second
	// shutdownSlack bounds what follows the shutdown drain: the final
	// commit and leaving the group (closeGrace, 2s), then the client's
	// close (about 1s); 5s in all.
	shutdownSlack = 5 * time.Second
)

// check is one property of a rendered kustomization.
type check struct {
	name string
	fn   func(k *kit) error
}

// checks run on every kustomization. Each names, in its comment, the
// mutation it catches; TestChecksCatchMutations makes each mutation.
var checks = []check{
	{"kinds", checkKinds},
	{"config", checkConfig},
	{"ports", checkPorts},
	{"grace period", checkGracePeriod},
	{"secrets", checkSecrets},
	{"scaled object", checkScaledObject},
	{"hardening", checkHardening},
	{"selectors", checkSelectors},
}

// checkKinds: one Deployment of one container, one ScaledObject, one PDB, a
// PodMonitor and no Secret. Catches a Secret added to the kustomization.
func checkKinds(k *kit) error {
	var p problems
	for _, c := range []struct {
		what string
		n    int
	}{{"Deployment", len(k.deployments)}, {"ScaledObject", len(k.scaled)}, {"PodDisruptionBudget", len(k.pdbs)}, {"PodMonitor", len(k.podMonitors)}} {
		if c.n != 1 {
			p.add("%d %ss, want 1", c.n, c.what)
		}
	}
	if k.container == nil {
		p.add("the Deployment must have exactly one container")
	}
	if k.secrets > 0 {
		p.add("%d Secrets in the kustomization: secrets are created apart (README), never rendered from the repository", k.secrets)
	}
	return p.err()
}

// checkConfig: the mounted atrelay.yaml is the one `--config` names, and
// atrelay's own loader accepts it with the container's environment (Secrets
// as dummies, ConfigMap values as rendered). Catches a ${VAR} the container
// does not define, and a broker address without a port in atrelay-env.
func checkConfig(k *kit) error {
	if k.container == nil {
		return fmt.Errorf("no container")
	}
	if k.configPath == "" {
		return fmt.Errorf("the container's args do not pass --config")
	}
	if k.configYAML == nil {
		return fmt.Errorf("--config %s: no ConfigMap volume mounted there has that file", k.configPath)
	}
	if k.cfgErr != nil {
		return fmt.Errorf("the ConfigMap's configuration, with the container's environment: %w", k.cfgErr)
	}
	return nil
}

// checkPorts: the probes, the container ports, the metrics Service and the
// PodMonitor all point at the configuration's listeners, which listen on
// every interface. Catches a changed probe or container port, a listener on
// 127.0.0.1, a PodMonitor naming another port.
func checkPorts(k *kit) error {
	if k.cfg == nil {
		return fmt.Errorf("no loaded configuration (see the config check)")
	}
	var p problems
	listenPort := func(key, addr string) int32 {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			p.add("telemetry.%s %q: %v", key, addr, err)
			return 0
		}
		if host != "" && host != "0.0.0.0" && host != "::" {
			p.add("telemetry.%s %q listens on %s only: the kubelet and Prometheus reach the pod's IP", key, addr, host)
		}
		n, _ := strconv.Atoi(port)
		return int32(n)
	}
	metrics := listenPort("metrics_listen", k.cfg.Telemetry.MetricsListen)
	health := listenPort("health_listen", k.cfg.Telemetry.HealthListen)

	c := k.container
	resolve := func(what string, port intstr.IntOrString) int32 {
		if port.Type == intstr.Int {
			return port.IntVal
		}
		for _, cp := range c.Ports {
			if cp.Name == port.StrVal {
				return cp.ContainerPort
			}
		}
		p.add("%s: the container has no port named %q", what, port.StrVal)
		return 0
	}
	probe := func(what, path string, pr *corev1.Probe) {
		switch {
		case pr == nil || pr.HTTPGet == nil:
			p.add("%s: want an HTTP GET probe of %s", what, path)
		case pr.HTTPGet.Path != path:
			p.add("%s: path %s, want %s", what, pr.HTTPGet.Path, path)
		default:
			if got := resolve(what, pr.HTTPGet.Port); got != health {
				p.add("%s: port %d, but telemetry.health_listen is %s", what, got, k.cfg.Telemetry.HealthListen)
			}
		}
	}
	probe("livenessProbe", "/healthz", c.LivenessProbe)
	probe("readinessProbe", "/readyz", c.ReadinessProbe)

	var metricsPortName string
	for _, cp := range c.Ports {
		if cp.ContainerPort == metrics {
			metricsPortName = cp.Name
		}
	}
	if metricsPortName == "" {
		p.add("no container port is telemetry.metrics_listen's %d", metrics)
	}
	for _, pm := range k.podMonitors {
		for i, ep := range pm.Spec.PodMetricsEndpoints {
			if ep.Port == nil || *ep.Port != metricsPortName {
				got := "none"
				if ep.Port != nil {
					got = *ep.Port
				}
				p.add("PodMonitor %s endpoint %d: port %q, want the container's metrics port %q", pm.Name, i, got, metricsPortName)
			}
			if ep.Path != "" && ep.Path != "/metrics" {
				p.add("PodMonitor %s endpoint %d: path %s, want /metrics", pm.Name, i, ep.Path)
			}
		}
		if len(pm.Spec.PodMetricsEndpoints) == 0 {
			p.add("PodMonitor %s has no endpoint", pm.Name)
		}
	}
	for _, s := range k.services {
		for _, sp := range s.Spec.Ports {
			if got := resolve("Service "+s.Name, sp.TargetPort); got != metrics {
				p.add("Service %s port %s: target %d, but telemetry.metrics_listen is %s", s.Name, sp.Name, got, k.cfg.Telemetry.MetricsListen)
			}
		}
	}
	return p.err()
}

// checkGracePeriod: the kubelet waits longer than atrelay's longest exit: a
// revoke's drain already under way at SIGTERM, then the shutdown drain and
// the close. Catches a shutdown_timeout raised alone, or a shorter grace
// period.
func checkGracePeriod(k *kit) error {
	if k.cfg == nil || k.deploy == nil {
		return fmt.Errorf("no loaded configuration (see the config check)")
	}
	g := k.deploy.Spec.Template.Spec.TerminationGracePeriodSeconds
	st := k.cfg.Delivery.Relay.ShutdownTimeout
	need := st + shutdownSlack + min(st, rebalanceTimeout/2)
	if g == nil || time.Duration(*g)*time.Second <= need {
		got := "unset (30s)"
		if g != nil {
			got = fmt.Sprintf("%ds", *g)
		}
		return fmt.Errorf("terminationGracePeriodSeconds %s: want more than shutdown_timeout %s + %s + the rebalance drain %s = %s",
			got, st, shutdownSlack, min(st, rebalanceTimeout/2), need)
	}
	return nil
}

// secretPaths lists the key paths of every secret.Secret in the
// configuration ("kafka.sasl.password"), so that a secret added later is
// checked too.
func secretPaths() []string {
	var out []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		switch t.Kind() {
		case reflect.Struct:
			for f := range t.Fields() {
				name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				if !f.IsExported() || name == "-" {
					continue
				}
				if f.Type == reflect.TypeFor[secret.Secret]() {
					out = append(out, joinPath(prefix, name))
					continue
				}
				if name == "" { // inline
					walk(f.Type, prefix)
				} else {
					walk(f.Type, joinPath(prefix, name))
				}
			}
		case reflect.Slice:
			walk(t.Elem(), prefix+"[]")
		case reflect.Pointer:
			walk(t.Elem(), prefix)
		}
	}
	walk(reflect.TypeFor[config.Config](), "")
	return out
}

func joinPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// rawValues returns the values at a key path of the unexpanded YAML
// ("integrations[].x" gives one per element; absent keys give nothing).
func rawValues(doc any, path string) []any {
	if path == "" {
		return []any{doc}
	}
	key, rest, _ := strings.Cut(path, ".")
	if name, ok := strings.CutSuffix(key, "[]"); ok {
		m, _ := doc.(map[string]any)
		list, _ := m[name].([]any)
		var out []any
		for _, el := range list {
			out = append(out, rawValues(el, rest)...)
		}
		return out
	}
	m, _ := doc.(map[string]any)
	v, ok := m[key]
	if !ok {
		return nil
	}
	return rawValues(v, rest)
}

var envRef = regexp.MustCompile(`^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$`)

// checkSecrets: every secret of the configuration is one ${VAR} reference
// whose variable comes from a Secret (secretKeyRef), no environment
// variable named like a credential holds a literal, and the rendered set
// has no Secret (checkKinds). Catches a literal password in the ConfigMap,
// and a password set with `value:` in the Deployment.
func checkSecrets(k *kit) error {
	if k.configYAML == nil {
		return fmt.Errorf("no mounted configuration (see the config check)")
	}
	var doc any
	if err := yaml.Unmarshal(k.configYAML, &doc); err != nil {
		return err
	}
	var p problems
	for _, path := range secretPaths() {
		for _, v := range rawValues(doc, path) {
			s, _ := v.(string)
			if s == "" {
				continue
			}
			m := envRef.FindStringSubmatch(s)
			if m == nil {
				p.add("%s: a literal in the ConfigMap; write ${VAR} and take VAR from a Secret", path)
				continue
			}
			if src := k.env[m[1]]; src.secret == nil {
				p.add("%s: ${%s} must come from a secretKeyRef, not a literal or a ConfigMap", path, m[1])
			}
		}
	}
	credential := regexp.MustCompile(`(?i)PASSWORD|SECRET|TOKEN|CREDENTIAL|API_?KEY`)
	for _, e := range k.container.Env {
		if credential.MatchString(e.Name) && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
			p.add("env %s: a credential must come from a secretKeyRef", e.Name)
		}
	}
	return p.err()
}

// kafkaMetadataKeys are the kafka trigger's metadata keys (KEDA 2.18
// docs); another key is a typo KEDA would ignore.
var kafkaMetadataKeys = []string{
	"bootstrapServers", "bootstrapServersFromEnv", "consumerGroup", "consumerGroupFromEnv", "topic", "topicFromEnv",
	"lagThreshold", "activationLagThreshold", "offsetResetPolicy", "allowIdleConsumers", "scaleToZeroOnInvalidOffset",
	"excludePersistentLag", "limitToPartitionsWithLag", "ensureEvenDistributionOfPartitions", "version",
	"partitionLimitation", "sasl", "saslTokenProvider", "tls", "unsafeSsl", "awsRegion",
}

// keda's SASL names for atrelay's mechanisms.
var kedaSASL = map[string]string{"": "none", "PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}

// checkScaledObject: KEDA scales this Deployment (which leaves replicas to
// it) between 1 and the partition count, on the lag of the configuration's
// topic and group, through the same bootstrap address, SASL mechanism, TLS
// and credentials as atrelay. Catches another topic or group in the
// trigger, a maxReplicaCount above the partitions, `tls: disable` while
// atrelay uses TLS, a typo in a metadata key, replicas set in the
// Deployment.
func checkScaledObject(k *kit) error {
	if len(k.scaled) != 1 || k.cfg == nil || k.deploy == nil {
		return fmt.Errorf("want one ScaledObject and a loaded configuration")
	}
	so := k.scaled[0]
	var p problems
	known := func(what string, m map[string]any, keys ...string) {
		for key := range m {
			if !slices.Contains(keys, key) {
				p.add("%s: unknown key %q", what, key)
			}
		}
	}
	spec, _ := so.Object["spec"].(map[string]any)
	known("ScaledObject spec", spec, "scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod",
		"idleReplicaCount", "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers")
	target, _, _ := unstructured.NestedStringMap(so.Object, "spec", "scaleTargetRef")
	if target["name"] != k.deploy.Name || (target["kind"] != "" && target["kind"] != "Deployment") {
		p.add("scaleTargetRef %v, want the Deployment %s", target, k.deploy.Name)
	}
	if k.deploy.Spec.Replicas != nil {
		p.add("the Deployment sets replicas (%d): KEDA owns the count, and every apply would reset it", *k.deploy.Spec.Replicas)
	}
	minR, _, _ := unstructured.NestedInt64(so.Object, "spec", "minReplicaCount")
	maxR, _, _ := unstructured.NestedInt64(so.Object, "spec", "maxReplicaCount")
	if minR < 1 || minR > maxR {
		p.add("minReplicaCount %d: want at least 1 (no scale to zero) and at most maxReplicaCount %d", minR, maxR)
	}
	if maxR != topicPartitions {
		p.add("maxReplicaCount %d: want the topic's partition count, %d (topicPartitions)", maxR, topicPartitions)
	}

	triggers, _, _ := unstructured.NestedSlice(so.Object, "spec", "triggers")
	if len(triggers) != 1 {
		p.add("%d triggers, want one kafka trigger", len(triggers))
		return p.err()
	}
	tr, _ := triggers[0].(map[string]any)
	known("trigger", tr, "type", "name", "metadata", "authenticationRef", "metricType", "useCachedMetrics")
	if tr["type"] != "kafka" {
		p.add("trigger type %v, want kafka", tr["type"])
	}
	md, _ := tr["metadata"].(map[string]any)
	known("kafka trigger metadata", md, kafkaMetadataKeys...)
	str := func(key string) string { s, _ := md[key].(string); return s }
	kc := k.cfg.Kafka
	if str("topic") != kc.Topic {
		p.add("trigger topic %q, but kafka.topic is %q", str("topic"), kc.Topic)
	}
	if str("consumerGroup") != kc.Group {
		p.add("trigger consumerGroup %q, but kafka.group is %q", str("consumerGroup"), kc.Group)
	}
	if str("offsetResetPolicy") != kc.StartFrom {
		p.add("trigger offsetResetPolicy %q, but kafka.start_from is %q", str("offsetResetPolicy"), kc.StartFrom)
	}
	if n, err := strconv.Atoi(str("lagThreshold")); err != nil || n <= 0 {
		p.add("trigger lagThreshold %q: want a positive integer (a string)", str("lagThreshold"))
	}
	if str("allowIdleConsumers") == "true" {
		p.add("allowIdleConsumers: a member beyond the partitions owns nothing")
	}
	// The bootstrap address: KEDA's must be atrelay's.
	if env := str("bootstrapServersFromEnv"); env != "" {
		if _, ok := k.env[env]; !ok {
			p.add("bootstrapServersFromEnv %s: the container has no such variable", env)
		}
		if want := []string{"${" + env + "}"}; !slices.Equal(rawStrings(k.configYAML, "kafka", "brokers"), want) {
			p.add("bootstrapServersFromEnv %s, but kafka.brokers is %v, want %v", env, rawStrings(k.configYAML, "kafka", "brokers"), want)
		}
	} else if got := strings.Split(str("bootstrapServers"), ","); !slices.Equal(got, kc.Brokers) {
		p.add("trigger bootstrapServers %v, but kafka.brokers is %v", got, kc.Brokers)
	}
	if want := kedaSASL[kc.SASL.Mechanism]; str("sasl") != want && !(want == "none" && str("sasl") == "") {
		p.add("trigger sasl %q, but kafka.sasl.mechanism %q is %q for KEDA", str("sasl"), kc.SASL.Mechanism, want)
	}
	if tlsOn := str("tls") == "enable"; tlsOn != kc.TLS.Enabled {
		p.add("trigger tls %q, but kafka.tls.enabled is %t", str("tls"), kc.TLS.Enabled)
	}
	// KEDA's credentials are atrelay's.
	if kc.SASL.Mechanism != "" {
		name, _, _ := unstructured.NestedString(tr, "authenticationRef", "name")
		ta := k.triggerAuths[name]
		if ta == nil {
			p.add("trigger authenticationRef %q: no TriggerAuthentication of that name", name)
			return p.err()
		}
		refs := map[string]string{}
		list, _, _ := unstructured.NestedSlice(ta.Object, "spec", "secretTargetRef")
		for _, r := range list {
			m, _ := r.(map[string]any)
			known("TriggerAuthentication secretTargetRef", m, "parameter", "name", "key")
			refs[fmt.Sprint(m["parameter"])] = fmt.Sprintf("%v/%v", m["name"], m["key"])
		}
		for _, c := range []struct{ param, path string }{{"username", "kafka.sasl.username"}, {"password", "kafka.sasl.password"}} {
			raw := rawStrings(k.configYAML, strings.Split(c.path, ".")...)
			var want string
			if len(raw) == 1 {
				if m := envRef.FindStringSubmatch(raw[0]); m != nil && k.env[m[1]].secret != nil {
					s := k.env[m[1]].secret
					want = s.Name + "/" + s.Key
				}
			}
			if want == "" {
				p.add("%s is not a ${VAR} from a Secret, so KEDA cannot share it", c.path)
			} else if refs[c.param] != want {
				p.add("TriggerAuthentication %s: %s is %q, but atrelay's %s comes from %s", name, c.param, refs[c.param], c.path, want)
			}
		}
	}
	return p.err()
}

// rawStrings returns the unexpanded value at path of the configuration: a
// string, or a list of strings.
func rawStrings(data []byte, path ...string) []string {
	var doc any
	if yaml.Unmarshal(data, &doc) != nil {
		return nil
	}
	for _, key := range path {
		m, _ := doc.(map[string]any)
		doc = m[key]
	}
	switch v := doc.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			out = append(out, fmt.Sprint(e))
		}
		return out
	}
	return nil
}

// checkHardening: the pod meets the "restricted" Pod Security Standard,
// with a read-only root, no service account token, resources set, and
// a memory limit and no GOMEMLIMIT (atrelay takes 90% of the container's
// limit; GOMEMLIMIT would override that). Catches readOnlyRootFilesystem
// false, a capability kept, GOMEMLIMIT set, a missing memory limit.
func checkHardening(k *kit) error {
	if k.container == nil {
		return fmt.Errorf("no container")
	}
	var p problems
	ps := k.deploy.Spec.Template.Spec
	c := k.container
	psc := ps.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	sc := c.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	isTrue := func(b *bool) bool { return b != nil && *b }
	if !isTrue(sc.RunAsNonRoot) && !isTrue(psc.RunAsNonRoot) {
		p.add("runAsNonRoot is not set")
	}
	uid := psc.RunAsUser
	if sc.RunAsUser != nil {
		uid = sc.RunAsUser
	}
	if uid == nil || *uid == 0 {
		p.add("runAsUser: want the image's non-root uid")
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		p.add("readOnlyRootFilesystem: want true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		p.add("allowPrivilegeEscalation: want false")
	}
	if isTrue(sc.Privileged) {
		p.add("privileged: want false")
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		p.add("capabilities: want drop [ALL] and nothing added")
	}
	seccomp := psc.SeccompProfile
	if sc.SeccompProfile != nil {
		seccomp = sc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		p.add("seccompProfile: want RuntimeDefault")
	}
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		p.add("automountServiceAccountToken: want false (atrelay never calls the Kubernetes API)")
	}
	if ps.HostNetwork || ps.HostPID || ps.HostIPC {
		p.add("host namespaces: want none")
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := c.Resources.Requests[r]; !ok || q.IsZero() {
			p.add("resources.requests.%s: want it set", r)
		}
	}
	limit, ok := c.Resources.Limits[corev1.ResourceMemory]
	if !ok {
		p.add("resources.limits.memory: want it set (atrelay's memory limit comes from it)")
	} else if req := c.Resources.Requests[corev1.ResourceMemory]; limit.Cmp(req) < 0 {
		p.add("memory limit %s below its request %s", limit.String(), req.String())
	}
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" {
			p.add("GOMEMLIMIT: want it unset; atrelay sets 90%% of the container's memory limit, GOMEMLIMIT overrides that")
		}
	}
	if strings.HasSuffix(c.Image, ":latest") || !strings.Contains(imageName(c.Image), ":") && !strings.Contains(c.Image, "@") {
		p.add("image %q: want a pinned tag or digest", c.Image)
	}
	return p.err()
}

// imageName is the last element of an image reference (the registry may
// have a port).
func imageName(ref string) string {
	return ref[strings.LastIndex(ref, "/")+1:]
}

// checkSelectors: the Deployment, the PDB, the Service, the PodMonitor and
// the anti-affinity select exactly the pods of the template; the PDB
// allows one eviction at a time; the anti-affinity spreads over nodes.
// Catches a PDB selecting another label, a PDB allowing two.
func checkSelectors(k *kit) error {
	if k.deploy == nil {
		return fmt.Errorf("no Deployment")
	}
	var p problems
	pods := labels.Set(k.deploy.Spec.Template.Labels)
	matches := func(what string, sel *metav1.LabelSelector) {
		s, err := metav1.LabelSelectorAsSelector(sel)
		switch {
		case err != nil:
			p.add("%s: %v", what, err)
		case s.Empty():
			p.add("%s: an empty selector selects every pod of the namespace", what)
		case !s.Matches(pods):
			p.add("%s: selector %s does not select the pods (%s)", what, s, pods)
		}
	}
	matches("Deployment", k.deploy.Spec.Selector)
	for _, pdb := range k.pdbs {
		matches("PodDisruptionBudget "+pdb.Name, pdb.Spec.Selector)
		if mu := pdb.Spec.MaxUnavailable; mu == nil || mu.String() != "1" || pdb.Spec.MinAvailable != nil {
			p.add("PodDisruptionBudget %s: want maxUnavailable 1 (and no minAvailable)", pdb.Name)
		}
	}
	for _, s := range k.services {
		matches("Service "+s.Name, &metav1.LabelSelector{MatchLabels: s.Spec.Selector})
	}
	for _, pm := range k.podMonitors {
		matches("PodMonitor "+pm.Name, &pm.Spec.Selector)
	}
	aff := k.deploy.Spec.Template.Spec.Affinity
	var spread bool
	if aff != nil && aff.PodAntiAffinity != nil {
		for _, w := range aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			if w.PodAffinityTerm.TopologyKey == "kubernetes.io/hostname" {
				matches("pod anti-affinity", w.PodAffinityTerm.LabelSelector)
				spread = true
			}
		}
	}
	if !spread {
		p.add("want a preferred pod anti-affinity on kubernetes.io/hostname")
	}
	return p.err()
}
