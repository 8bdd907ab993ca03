package examples_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/maestro-ml/maestro/controlplane/policy"
)

// kustomization is the subset of kustomize's file that examples/k8s uses;
// decoding it strictly catches a misspelt field as surely as kustomize would.
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors"`
	} `json:"labels"`
	Resources          []string `json:"resources"`
	ConfigMapGenerator []struct {
		Name  string   `json:"name"`
		Files []string `json:"files"`
	} `json:"configMapGenerator"`
}

// manifests holds every object of examples/k8s, decoded into the official
// Kubernetes API types.
type manifests struct {
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	pdbs        []*policyv1.PodDisruptionBudget
	accounts    []*corev1.ServiceAccount
	claims      []*corev1.PersistentVolumeClaim
	bindings    []*rbacv1.ClusterRoleBinding
}

// splitDocs splits a multi-document YAML file on its "---" separators.
func splitDocs(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(data, []byte("\n---\n")) {
		if len(bytes.TrimSpace(d)) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

func strict(t *testing.T, where string, doc []byte, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, into); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
}

func loadK8s(t *testing.T) (kustomization, manifests) {
	t.Helper()
	dir := "k8s"
	var k kustomization
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	strict(t, "kustomization.yaml", data, &k)
	var m manifests
	for _, res := range k.Resources {
		data, err := os.ReadFile(filepath.Join(dir, res))
		if err != nil {
			t.Fatalf("kustomization lists %s: %v", res, err)
		}
		for i, doc := range splitDocs(data) {
			where := fmt.Sprintf("%s document %d", res, i+1)
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal(doc, &head); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			switch head.APIVersion + "/" + head.Kind {
			case "apps/v1/Deployment":
				var o appsv1.Deployment
				strict(t, where, doc, &o)
				m.deployments = append(m.deployments, &o)
			case "v1/Service":
				var o corev1.Service
				strict(t, where, doc, &o)
				m.services = append(m.services, &o)
			case "policy/v1/PodDisruptionBudget":
				var o policyv1.PodDisruptionBudget
				strict(t, where, doc, &o)
				m.pdbs = append(m.pdbs, &o)
			case "v1/ServiceAccount":
				var o corev1.ServiceAccount
				strict(t, where, doc, &o)
				m.accounts = append(m.accounts, &o)
			case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
				var o rbacv1.ClusterRoleBinding
				strict(t, where, doc, &o)
				m.bindings = append(m.bindings, &o)
			case "v1/PersistentVolumeClaim":
				var o corev1.PersistentVolumeClaim
				strict(t, where, doc, &o)
				m.claims = append(m.claims, &o)
			default:
				t.Fatalf("%s: kind %s/%s has no decoder in this test; add one", where, head.APIVersion, head.Kind)
			}
		}
	}
	return k, m
}

func TestKubernetesManifestsDecodeStrictly(t *testing.T) {
	k, m := loadK8s(t)
	for _, g := range k.ConfigMapGenerator {
		for _, f := range g.Files {
			if _, err := os.Stat(filepath.Join("k8s", f)); err != nil {
				t.Errorf("configMapGenerator %s: %v", g.Name, err)
			}
		}
	}
	if len(m.deployments) == 0 || len(m.services) == 0 || len(m.pdbs) == 0 {
		t.Fatalf("expected deployments, services and disruption budgets, got %d, %d, %d",
			len(m.deployments), len(m.services), len(m.pdbs))
	}
}

func TestKubernetesManifestsAreConsistent(t *testing.T) {
	_, m := loadK8s(t)
	templates := map[string]labels.Set{}
	for _, d := range m.deployments {
		sel, err := metav1Selector(d.Spec.Selector.MatchLabels)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := labels.Set(d.Spec.Template.Labels)
		if !sel.Matches(tmpl) {
			t.Errorf("deployment %s: selector %v does not match its pod labels %v", d.Name, sel, tmpl)
		}
		templates[d.Name] = tmpl
		checkPods(t, d)
	}
	matchesSome := func(kind, name string, sel map[string]string) {
		s, err := metav1Selector(sel)
		if err != nil {
			t.Fatal(err)
		}
		for _, tmpl := range templates {
			if s.Matches(tmpl) {
				return
			}
		}
		t.Errorf("%s %s: selector %v matches no deployment's pods", kind, name, sel)
	}
	for _, s := range m.services {
		matchesSome("service", s.Name, s.Spec.Selector)
	}
	for _, p := range m.pdbs {
		matchesSome("pod disruption budget", p.Name, p.Spec.Selector.MatchLabels)
	}
	var cp *appsv1.Deployment
	for _, d := range m.deployments {
		if d.Name == "maestro-controlplane" {
			cp = d
		}
	}
	if cp == nil || cp.Spec.Replicas == nil || *cp.Spec.Replicas < 2 {
		t.Errorf("the control plane must run several replicas")
	}
	// Secure by default: xDS over mTLS (no --insecure, which would hand
	// configuration to any pod), first certificates by bootstrap token.
	if cp != nil {
		args := strings.Join(cp.Spec.Template.Spec.Containers[0].Args, " ")
		if strings.Contains(args, "--insecure") {
			t.Errorf("the control plane runs with --insecure: %s", args)
		}
		if !strings.Contains(args, "--bootstrap-tokens=") {
			t.Errorf("the control plane has no bootstrap tokens for new nodes: %s", args)
		}
		// TokenReview needs its service account bound to a role that may
		// create tokenreviews.
		if strings.Contains(args, "--k8s-token-review") {
			bound := false
			for _, b := range m.bindings {
				for _, s := range b.Subjects {
					bound = bound || (b.RoleRef.Name == "system:auth-delegator" && s.Kind == "ServiceAccount" &&
						s.Name == cp.Spec.Template.Spec.ServiceAccountName)
				}
			}
			if !bound {
				t.Errorf("--k8s-token-review without a system:auth-delegator binding for %s", cp.Spec.Template.Spec.ServiceAccountName)
			}
		}
	}
}

// checkPods asserts what an operator relies on in every pod: named ports
// behind each probe, resource requests, and volumes that exist.
func checkPods(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	vols := map[string]bool{}
	for _, v := range d.Spec.Template.Spec.Volumes {
		vols[v.Name] = true
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		where := d.Name + "/" + c.Name
		ports := map[string]bool{}
		for _, p := range c.Ports {
			ports[p.Name] = true
		}
		for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
			if p == nil || p.HTTPGet == nil {
				t.Errorf("%s: no HTTP %s probe", where, name)
				continue
			}
			if !ports[p.HTTPGet.Port.StrVal] {
				t.Errorf("%s: %s probe uses port %q, which the container does not name", where, name, p.HTTPGet.Port.String())
			}
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
			t.Errorf("%s: no cpu/memory requests", where)
		}
		for _, vm := range c.VolumeMounts {
			if !vols[vm.Name] {
				t.Errorf("%s: mounts volume %q, which the pod does not define", where, vm.Name)
			}
		}
		if len(c.Args) == 0 || strings.HasPrefix(c.Args[0], "-") {
			t.Errorf("%s: args must start with a maestro subcommand, got %v", where, c.Args)
		}
	}
}

func metav1Selector(m map[string]string) (labels.Selector, error) {
	if len(m) == 0 {
		return nil, fmt.Errorf("empty selector")
	}
	return labels.SelectorFromSet(m), nil
}

func TestKubernetesPolicyIsValid(t *testing.T) {
	mesh, err := policy.Load(context.Background(), filepath.Join("k8s", "policy.yaml"))
	if err != nil {
		t.Fatalf("examples/k8s/policy.yaml: %v", err)
	}
	_, m := loadK8s(t)
	// Every endpoint host must be a Service the manifests create, in the
	// kustomization's namespace.
	services := map[string]bool{}
	for _, s := range m.services {
		services[s.Name+".maestro.svc.cluster.local"] = true
	}
	for _, s := range mesh.Services {
		for _, v := range s.Spec.Versions {
			for _, ep := range v.Endpoints {
				if !services[ep.Address] {
					t.Errorf("service %s version %s: endpoint %s is not a Service of examples/k8s", s.Metadata.Name, v.Name, ep.Address)
				}
			}
		}
	}
}

// TestKubernetesArgsAreRealFlags runs the maestro binary's own --help for
// every container command, so a renamed or removed flag breaks this test
// instead of a rollout.
func TestKubernetesArgsAreRealFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the maestro binary")
	}
	_, m := loadK8s(t)
	bin := filepath.Join(t.TempDir(), "maestro")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/maestro").CombinedOutput(); err != nil {
		t.Fatalf("build maestro: %v\n%s", err, out)
	}
	flagName := regexp.MustCompile(`^--?([a-z][a-z0-9-]*)`)
	for _, d := range m.deployments {
		for _, c := range d.Spec.Template.Spec.Containers {
			sub := c.Args[0]
			help, _ := exec.Command(bin, sub, "--help").CombinedOutput()
			if !strings.Contains(string(help), "-") || strings.Contains(string(help), "unknown command") {
				t.Errorf("%s: maestro %s is not a command:\n%s", d.Name, sub, help)
				continue
			}
			for _, arg := range c.Args[1:] {
				f := flagName.FindStringSubmatch(arg)
				if f == nil {
					t.Errorf("%s: argument %q is not a flag", d.Name, arg)
					continue
				}
				if !regexp.MustCompile(`(?m)^\s+-` + regexp.QuoteMeta(f[1]) + `\b`).Match(help) {
					t.Errorf("%s: maestro %s has no flag -%s", d.Name, sub, f[1])
				}
			}
		}
	}
}
