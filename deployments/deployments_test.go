// Package deployments_test checks what deployments/ ships, offline: the
// Kubernetes manifests decode strictly into the typed Kubernetes API
// structs and agree with each other and with the configuration they carry;
// the compose file passes the Compose specification's schema
// (compose-go); the Grafana dashboard parses and queries only metrics
// tokenrelay registers.
package deployments_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/hibiken/asynq"
	asynqmetrics "github.com/hibiken/asynq/x/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	yamlv3 "gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/budget"
	"github.com/tokenrelay/tokenrelay/internal/buildinfo"
	"github.com/tokenrelay/tokenrelay/internal/metrics"
	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/webhooks"
)

// masterKey is a valid TOKENRELAY_SECRET_KEY for parsing configurations.
var masterKey = base64.StdEncoding.EncodeToString(make([]byte, 32))

// manifests are the Kubernetes objects of deployments/kubernetes, decoded.
type manifests struct {
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	services     map[string]*corev1.Service
	configMaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	pdbs         map[string]*policyv1.PodDisruptionBudget
	hpas         map[string]*autoscalingv2.HorizontalPodAutoscaler
	namespaces   map[string]*corev1.Namespace
}

// decodeStrict decodes one manifest into the typed struct of its kind,
// refusing unknown and duplicate fields.
func (m *manifests) decodeStrict(t *testing.T, file string, doc []byte) {
	t.Helper()
	var tm metav1.TypeMeta
	require.NoError(t, yaml.Unmarshal(doc, &tm), file)
	into := func(obj any, name *string) {
		require.NoError(t, yaml.UnmarshalStrict(doc, obj), "%s: %s/%s", file, tm.APIVersion, tm.Kind)
		require.NotEmpty(t, *name, "%s: %s has no name", file, tm.Kind)
	}
	switch gvk := tm.APIVersion + " " + tm.Kind; gvk {
	case "apps/v1 Deployment":
		o := &appsv1.Deployment{}
		into(o, &o.Name)
		m.deployments[o.Name] = o
	case "apps/v1 StatefulSet":
		o := &appsv1.StatefulSet{}
		into(o, &o.Name)
		m.statefulSets[o.Name] = o
	case "v1 Service":
		o := &corev1.Service{}
		into(o, &o.Name)
		m.services[o.Name] = o
	case "v1 ConfigMap":
		o := &corev1.ConfigMap{}
		into(o, &o.Name)
		m.configMaps[o.Name] = o
	case "v1 Secret":
		o := &corev1.Secret{}
		into(o, &o.Name)
		m.secrets[o.Name] = o
	case "v1 Namespace":
		o := &corev1.Namespace{}
		into(o, &o.Name)
		m.namespaces[o.Name] = o
	case "policy/v1 PodDisruptionBudget":
		o := &policyv1.PodDisruptionBudget{}
		into(o, &o.Name)
		m.pdbs[o.Name] = o
	case "autoscaling/v2 HorizontalPodAutoscaler":
		o := &autoscalingv2.HorizontalPodAutoscaler{}
		into(o, &o.Name)
		m.hpas[o.Name] = o
	default:
		t.Fatalf("%s: unexpected object %s (add it to this test)", file, gvk)
	}
}

// kustomization is the part of kustomization.yaml this test reads.
type kustomization struct {
	APIVersion         string   `yaml:"apiVersion"`
	Kind               string   `yaml:"kind"`
	Namespace          string   `yaml:"namespace"`
	Labels             []any    `yaml:"labels"`
	Resources          []string `yaml:"resources"`
	ConfigMapGenerator []struct {
		Name  string   `yaml:"name"`
		Files []string `yaml:"files"`
	} `yaml:"configMapGenerator"`
}

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	m := &manifests{
		deployments: map[string]*appsv1.Deployment{}, statefulSets: map[string]*appsv1.StatefulSet{}, services: map[string]*corev1.Service{},
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{}, hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		namespaces: map[string]*corev1.Namespace{},
	}
	k := m.loadKustomization(t, "kubernetes")
	for name, d := range m.deployments {
		require.Equal(t, k.Namespace, d.Namespace, "deployment %s namespace", name)
	}
	for name, d := range m.statefulSets {
		require.Equal(t, k.Namespace, d.Namespace, "statefulset %s namespace", name)
	}
	return m
}

// loadKustomization decodes the manifests dir's kustomization.yaml lists
// (and those of the directories it includes, such as ../nats), and makes
// the ConfigMaps its configMapGenerator names from their files.
func (m *manifests) loadKustomization(t *testing.T, dir string) kustomization {
	t.Helper()
	var k kustomization
	raw, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	require.NoError(t, err)
	require.NoError(t, yaml.UnmarshalStrict(raw, &k), dir)
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	require.NoError(t, err)
	var listed, resources []string
	for _, f := range files {
		if filepath.Base(f) != "kustomization.yaml" {
			listed = append(listed, filepath.Base(f))
		}
	}
	for _, f := range k.Resources {
		path := filepath.Join(dir, f)
		if st, err := os.Stat(path); err == nil && st.IsDir() {
			m.loadKustomization(t, path)
			continue
		}
		resources = append(resources, f)
		raw, err := os.ReadFile(path)
		require.NoError(t, err)
		for doc := range strings.SplitSeq(string(raw), "\n---\n") {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			m.decodeStrict(t, f, []byte(doc))
		}
	}
	require.ElementsMatch(t, listed, resources, "%s/kustomization.yaml must list every manifest file, and only those", dir)
	for _, g := range k.ConfigMapGenerator {
		cm := &corev1.ConfigMap{Data: map[string]string{}}
		cm.Name = g.Name
		for _, f := range g.Files {
			raw, err := os.ReadFile(filepath.Join(dir, f))
			require.NoError(t, err, "%s: configMapGenerator %s", dir, g.Name)
			cm.Data[filepath.Base(f)] = string(raw)
		}
		m.configMaps[g.Name] = cm
	}
	return k
}

func stripComments(doc string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	require.Contains(t, m.deployments, "tokenrelay-scheduler")
	require.Contains(t, m.deployments, "tokenrelay-worker")

	// Every Deployment: selector matches its pods; each container has an
	// image, probes on a declared port, resources, and runs as non-root
	// without privileges; every ConfigMap and Secret it names exists.
	for name, d := range m.deployments {
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		require.NoError(t, err, name)
		require.True(t, sel.Matches(labels.Set(d.Spec.Template.Labels)), "%s: selector does not match its pod labels", name)
		pod := d.Spec.Template.Spec
		require.True(t, *pod.SecurityContext.RunAsNonRoot, "%s runs as non-root", name)
		for _, v := range pod.Volumes {
			if v.ConfigMap != nil {
				require.Contains(t, m.configMaps, v.ConfigMap.Name, "%s: volume %s", name, v.Name)
			}
		}
		for _, c := range pod.Containers {
			require.Equal(t, madeImage, c.Image, "%s/%s runs the image make image builds", name, c.Name)
			ports := map[string]bool{}
			for _, p := range c.Ports {
				ports[p.Name] = true
			}
			for probe, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
				require.NotNil(t, p, "%s/%s has no %s probe", name, c.Name, probe)
				require.NotNil(t, p.HTTPGet, "%s/%s %s probe", name, c.Name, probe)
				require.True(t, ports[p.HTTPGet.Port.String()], "%s/%s %s probe port %s is not a container port", name, c.Name, probe, p.HTTPGet.Port.String())
			}
			require.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
			require.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
			require.False(t, c.Resources.Requests.Cpu().IsZero(), "%s/%s cpu request", name, c.Name)
			require.False(t, c.Resources.Requests.Memory().IsZero(), "%s/%s memory request", name, c.Name)
			require.False(t, c.Resources.Limits.Memory().IsZero(), "%s/%s memory limit", name, c.Name)
			require.False(t, *c.SecurityContext.AllowPrivilegeEscalation, "%s/%s", name, c.Name)
			for _, e := range c.EnvFrom {
				if e.SecretRef != nil {
					require.Contains(t, m.secrets, e.SecretRef.Name, "%s/%s envFrom", name, c.Name)
				}
			}
		}
	}
	// A PodDisruptionBudget for each Deployment.
	for name, d := range m.deployments {
		covered := false
		for _, pdb := range m.pdbs {
			sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
			require.NoError(t, err)
			covered = covered || sel.Matches(labels.Set(d.Spec.Template.Labels))
		}
		require.True(t, covered, "no PodDisruptionBudget selects %s", name)
	}
	// The worker's Service and HPA point at the worker.
	worker := m.deployments["tokenrelay-worker"]
	svc := m.services["tokenrelay-worker"]
	require.NotNil(t, svc)
	require.True(t, labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(worker.Spec.Template.Labels)), "the worker Service selects the workers")
	hpa := m.hpas["tokenrelay-worker"]
	require.NotNil(t, hpa)
	require.Equal(t, "Deployment", hpa.Spec.ScaleTargetRef.Kind)
	require.Equal(t, worker.Name, hpa.Spec.ScaleTargetRef.Name)
	require.GreaterOrEqual(t, hpa.Spec.MaxReplicas, *hpa.Spec.MinReplicas)

	// The configuration in the ConfigMap is valid with exactly the
	// variables the Secret provides, and listens where the probes look.
	secret := m.secrets["tokenrelay-secrets"]
	require.Contains(t, secret.StringData, config.EnvSecretKey, "the Secret holds the master key")
	cfg := parseConfig(t, "configmap tokenrelay-config", m.configMaps["tokenrelay-config"].Data["tokenrelay.yaml"], secret.StringData)
	require.Equal(t, containerPort(t, worker, "http"), port(t, cfg.HTTP.Addr), "http.addr is the worker's container port")
	require.Equal(t, containerPort(t, m.deployments["tokenrelay-scheduler"], "metrics"), port(t, cfg.Scheduler.MetricsAddr), "scheduler.metrics_addr is the scheduler's container port")
	// The worker's root filesystem is read-only: its spool (tokens issued
	// while Redis was away, kept across a restart) is on a writable volume.
	writable := false
	for _, vm := range worker.Spec.Template.Spec.Containers[0].VolumeMounts {
		writable = writable || (!vm.ReadOnly && strings.HasPrefix(cfg.Worker.SpoolDir, vm.MountPath+"/"))
	}
	require.True(t, writable, "worker.spool_dir %q is on a writable volume of the worker", cfg.Worker.SpoolDir)

	// NATS runs the shipped least-privilege configuration with every
	// variable it names, and tokenrelay connects to it over TLS as its user.
	nats := m.statefulSets["nats"]
	require.NotNil(t, nats, "the NATS StatefulSet")
	c := nats.Spec.Template.Spec.Containers[0]
	require.Equal(t, []string{"-c", "/etc/nats/nats-server.conf"}, c.Args)
	shipped, err := os.ReadFile("nats/nats-server.conf")
	require.NoError(t, err)
	require.Equal(t, string(shipped), m.configMaps["nats-config"].Data["nats-server.conf"])
	natsEnv := maps.Clone(m.secrets["nats-secrets"].StringData)
	for _, e := range c.Env {
		natsEnv[e.Name] = e.Value
	}
	require.ElementsMatch(t, natsConfVariables(t), slices.Collect(maps.Keys(natsEnv)), "the NATS pod has exactly the variables nats-server.conf names")
	require.True(t, strings.HasPrefix(secret.StringData["NATS_URL"], "tls://tokenrelay:"), "tokenrelay connects over TLS as user tokenrelay")
	require.Equal(t, "/etc/tokenrelay-nats/ca.crt", cfg.NATS.TLS.CAFile, "tokenrelay verifies the server against the CA mounted from nats-tls")
}

// natsConfVariables lists the environment variables nats/nats-server.conf
// names ($NAME).
func natsConfVariables(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("nats/nats-server.conf")
	require.NoError(t, err)
	var names []string
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, v := range regexp.MustCompile(`:\s*\$([A-Z][A-Z0-9_]*)`).FindAllStringSubmatch(line, -1) {
			if !slices.Contains(names, v[1]) {
				names = append(names, v[1])
			}
		}
	}
	require.NotEmpty(t, names)
	return names
}

// parseConfig parses a tokenrelay configuration, failing if it names an
// environment variable env does not hold.
func parseConfig(t *testing.T, what, yamlText string, env map[string]string) *config.Config {
	t.Helper()
	var missing []string
	cfg, err := config.Parse([]byte(yamlText), func(k string) (string, bool) {
		if k == config.EnvSecretKey {
			return masterKey, true // the manifests hold a placeholder
		}
		if _, ok := env[k]; ok && (k == "TOKENRELAY_ADMIN_TOKEN" || k == "TOKENRELAY_METRICS_TOKEN") {
			// A placeholder too, which config refuses: a token of 32 random bytes.
			return "placeholder-token-0123456789abcdefghijklmnopqrstuvwxyz", true
		}
		v, ok := env[k]
		optional := []string{config.EnvRedisURL, config.EnvNATSURL, config.EnvHTTPAddr, config.EnvConfig,
			config.EnvSecretKeysPrevious, config.EnvKMSURL, config.EnvSecretKeyWrapped, config.EnvSecretKeysPreviousWrapped}
		if !ok && !slices.Contains(optional, k) {
			missing = append(missing, k)
		}
		return v, ok
	})
	require.NoError(t, err, what)
	require.Empty(t, missing, "%s names variables its environment lacks", what)
	return cfg
}

func containerPort(t *testing.T, d *appsv1.Deployment, name string) int32 {
	t.Helper()
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == name {
				return p.ContainerPort
			}
		}
	}
	t.Fatalf("%s has no port %s", d.Name, name)
	return 0
}

func port(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	require.NoError(t, err, addr)
	var n int32
	_, err = fmt.Sscan(p, &n)
	require.NoError(t, err)
	return n
}

func TestComposeFile(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("compose.yaml")
	require.NoError(t, err)
	env := map[string]string{"TOKENRELAY_SECRET_KEY": masterKey, "TOKENRELAY_ADMIN_TOKEN": "admin-0123456789abcdefghijklmnopqrstuvwxyzABCDEF",
		"TOKENRELAY_METRICS_TOKEN": "metrics-0123456789abcdefghijklmnopqrstuvwxyzABCDEF"}
	for _, v := range natsConfVariables(t) {
		env[v] = "x"
	}
	wd, err := os.Getwd()
	require.NoError(t, err)
	project, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  wd,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(wd, "compose.yaml"), Content: raw}},
		Environment: env,
	}, func(o *loader.Options) { o.SetProjectName("tokenrelay", true) })
	require.NoError(t, err, "compose.yaml against the Compose schema")
	for _, s := range []string{"redis", "nats", "sandbox", "scheduler", "worker", "prometheus", "grafana"} {
		require.Contains(t, project.Services, s)
	}
	// tokenrelay's services run the image make image builds, never pulled.
	for _, s := range []string{"sandbox", "scheduler", "worker"} {
		require.Equal(t, madeImage, project.Services[s].Image, s)
		require.Equal(t, types.PullPolicyNever, project.Services[s].PullPolicy, s)
	}
	// NATS runs the shipped least-privilege configuration (JetStream, TLS,
	// users) with every variable it names; tokenrelay connects over TLS
	// as its user and verifies the server.
	nats := project.Services["nats"]
	require.Equal(t, types.ShellCommand{"-c", "/etc/nats/nats-server.conf"}, nats.Command)
	mounted := map[string]string{}
	for _, v := range nats.Volumes {
		mounted[v.Target] = v.Source
	}
	require.Equal(t, filepath.Join(wd, "nats", "nats-server.conf"), mounted["/etc/nats/nats-server.conf"])
	require.ElementsMatch(t, natsConfVariables(t), slices.Collect(maps.Keys(nats.Environment)), "the NATS service has exactly the variables nats-server.conf names")
	require.True(t, strings.HasPrefix(*project.Services["worker"].Environment["NATS_URL"], "tls://tokenrelay:"))

	// The secrets are required: without them compose refuses to start.
	_, err = loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir: wd, ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(wd, "compose.yaml"), Content: raw}},
		Environment: map[string]string{},
	}, func(o *loader.Options) { o.SetProjectName("tokenrelay", true) })
	require.ErrorContains(t, err, "TOKENRELAY_SECRET_KEY")

	// Every file mounted from here exists.
	for name, s := range project.Services {
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind {
				_, err := os.Stat(v.Source)
				require.NoError(t, err, "service %s mounts %s", name, v.Source)
			}
		}
	}
	// The configuration is valid with the environment compose gives it,
	// and Prometheus scrapes where it listens.
	cfgEnv := maps.Clone(project.Services["worker"].Environment)
	flat := map[string]string{}
	for k, v := range cfgEnv {
		if v != nil {
			flat[k] = *v
		}
	}
	text, err := os.ReadFile("compose/tokenrelay.yaml")
	require.NoError(t, err)
	cfg := parseConfig(t, "compose/tokenrelay.yaml", string(text), flat)
	require.Equal(t, "/etc/tokenrelay-nats/ca.pem", cfg.NATS.TLS.CAFile, "tokenrelay verifies the NATS server")

	var prom struct {
		Global        map[string]any `yaml:"global"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			Authorization struct {
				Type            string `yaml:"type"`
				CredentialsFile string `yaml:"credentials_file"`
			} `yaml:"authorization"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	promRaw, err := os.ReadFile("prometheus/prometheus.yml")
	require.NoError(t, err)
	dec := yamlv3.NewDecoder(bytes.NewReader(promRaw))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&prom))
	// /metrics wants the bearer token, which Prometheus reads from the
	// secret compose mounts.
	require.False(t, cfg.HTTP.MetricsToken.IsZero(), "compose sets http.metrics_token")
	require.Contains(t, project.Secrets, "metrics_token")
	require.Equal(t, "TOKENRELAY_METRICS_TOKEN", project.Secrets["metrics_token"].Environment)
	var promSecrets []string
	for _, s := range project.Services["prometheus"].Secrets {
		promSecrets = append(promSecrets, "/run/secrets/"+s.Source)
	}
	var targets []string
	for _, sc := range prom.ScrapeConfigs {
		require.Equal(t, "Bearer", sc.Authorization.Type, sc.JobName)
		require.Contains(t, promSecrets, sc.Authorization.CredentialsFile, "%s reads its token from a secret Prometheus has", sc.JobName)
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
	}
	require.Contains(t, targets, fmt.Sprintf("worker:%d", port(t, cfg.HTTP.Addr)))
	require.Contains(t, targets, fmt.Sprintf("scheduler:%d", port(t, cfg.Scheduler.MetricsAddr)))
}

// registeredNames is every metric name tokenrelay registers, read from the
// collectors its constructors build.
func registeredNames(t *testing.T) map[string]bool {
	t.Helper()
	creds, err := metrics.NewCredentials(metrics.CredentialsOptions{Store: noStore{}})
	require.NoError(t, err)
	db, rdb := testenv.RedisDB(t)
	_ = db
	ins := asynq.NewInspectorFromRedisClient(rdb)
	client := asynq.NewClientFromRedisClient(rdb)
	_, err = client.Enqueue(asynq.NewTask("probe", nil)) // so that a queue exists to describe
	require.NoError(t, err)
	collectors := []prometheus.Collector{
		metrics.NewEvents(metrics.EventsOptions{}), creds, metrics.NewOutbox(rdb, "", nil),
		asynqmetrics.NewQueueMetricsCollector(ins), requests.NewMetrics(), webhooks.NewMetrics(),
		metrics.NewBuildInfo(buildinfo.Read()),
	}
	collectors = append(collectors, budget.NewMetrics().Collectors()...)
	names := map[string]bool{}
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	for _, c := range collectors {
		ch := make(chan *prometheus.Desc, 64)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			mm := fq.FindStringSubmatch(d.String())
			require.Len(t, mm, 2, d.String())
			names[mm[1]] = true
		}
	}
	return names
}

type noStore struct{}

func (noStore) Scan(context.Context, func(store.Summary) error) error { return nil }

// dashboard is the part of a Grafana dashboard this test reads.
type dashboard struct {
	UID    string  `json:"uid"`
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`
}

type panel struct {
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("grafana/tokenrelay.json")
	require.NoError(t, err)
	var d dashboard
	require.NoError(t, json.Unmarshal(raw, &d), "the dashboard is JSON")
	require.Equal(t, "tokenrelay", d.UID)

	var ds struct {
		Datasources []struct {
			UID string `yaml:"uid"`
		} `yaml:"datasources"`
	}
	dsRaw, err := os.ReadFile("grafana/provisioning/datasources/prometheus.yaml")
	require.NoError(t, err)
	require.NoError(t, yamlv3.Unmarshal(dsRaw, &ds))
	require.Len(t, ds.Datasources, 1)

	known := registeredNames(t)
	metricName := regexp.MustCompile(`\b(?:tokenrelay|asynq)_[a-z0-9_]+\b`)
	used := map[string]bool{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
			require.NotNil(t, p.Datasource, "panel %q", p.Title)
			require.Equal(t, ds.Datasources[0].UID, p.Datasource.UID, "panel %q uses the provisioned data source", p.Title)
			for _, tg := range p.Targets {
				require.Equal(t, strings.Count(tg.Expr, "("), strings.Count(tg.Expr, ")"), "panel %q: unbalanced %s", p.Title, tg.Expr)
				for _, n := range metricName.FindAllString(tg.Expr, -1) {
					base := n
					for _, suffix := range []string{"_bucket", "_sum", "_count"} {
						if b, ok := strings.CutSuffix(n, suffix); ok && known[b] {
							base = b
						}
					}
					require.True(t, known[base], "panel %q queries %s, which tokenrelay does not register", p.Title, n)
					used[base] = true
				}
			}
		}
	}
	walk(d.Panels)
	// What the operators asked to see.
	for _, n := range []string{
		"tokenrelay_credentials", "tokenrelay_token_expiry_timestamp_seconds", "tokenrelay_token_last_renewal_timestamp_seconds",
		"tokenrelay_renewals_total", "tokenrelay_refresh_failures_total", "tokenrelay_renewal_lead_time_seconds",
		"tokenrelay_rotations_total", "tokenrelay_revocations_total", "tokenrelay_budget_limit", "tokenrelay_budget_used",
		"tokenrelay_budget_remaining", "tokenrelay_budget_429_total", "tokenrelay_requests_total", "tokenrelay_webhooks_total",
		"tokenrelay_webhook_duration_seconds", "tokenrelay_outbox_depth", "tokenrelay_outbox_lag_seconds", "asynq_queue_size",
		"tokenrelay_build_info",
	} {
		require.True(t, used[n], "the dashboard does not show %s", n)
	}
}

// madeImage is the image make image builds (scripts/image.sh with its
// defaults; buildah puts unqualified names under localhost/), the one the
// compose file and the Kubernetes manifests run.
const madeImage = "localhost/tokenrelay:dev"

// TestDockerfile checks the image recipe: nothing to pull by default (FROM
// scratch, the base a build argument), nothing to run (a scratch image has
// no shell), a non-root user. TestImage builds and runs it.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../Dockerfile")
	require.NoError(t, err)
	var from []string
	var user string
	args := map[string]string{}
	for line := range strings.SplitSeq(string(raw), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			from = append(from, fields[1])
			user = "" // USER applies to its stage
		case "USER":
			user = fields[1]
		case "ARG":
			name, value, _ := strings.Cut(fields[1], "=")
			args[name] = value
		case "RUN":
			t.Errorf("the Dockerfile runs %q: scripts/image.sh prepares everything, the image has no shell", line)
		}
	}
	require.Equal(t, []string{"${BASE}"}, from, "one stage, on the BASE build argument")
	require.Equal(t, "scratch", args["BASE"], "nothing to pull by default")
	require.Equal(t, "65532:65532", user, "the final stage runs as nonroot, by number (Kubernetes' runAsNonRoot needs one)")
}
