package policy

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// base is a valid mesh the cases add documents to.
const base = `apiVersion: maestro.dev/v1alpha1
kind: Service
metadata: {name: fraud, namespace: ml}
spec:
  versions:
    - {name: v1, endpoints: [{address: 127.0.0.1, port: 9001}]}
    - {name: v2, endpoints: [{address: 127.0.0.1, port: 9002}]}
---
apiVersion: maestro.dev/v1alpha1
kind: Service
metadata: {name: churn}
spec:
  protocol: http
  versions:
    - {name: v1, endpoints: [{address: 127.0.0.1, port: 9004}]}
---
apiVersion: maestro.dev/v1alpha1
kind: Route
metadata: {name: fraud}
spec: {service: fraud, match: {model: fraud}, split: [{version: v1, weight: 90}, {version: v2, weight: 10}]}
---
apiVersion: maestro.dev/v1alpha1
kind: Sidecar
metadata: {name: fraud}
spec: {service: fraud, inbound: {appPort: 9001}}
`

// d renders one document with a flow-style spec.
func d(kind, name, spec string) string {
	return fmt.Sprintf("---\napiVersion: maestro.dev/v1alpha1\nkind: %s\nmetadata: {name: %s}\nspec: %s\n", kind, name, spec)
}

func route(name, spec string) string { return d(KindRoute, name, spec) }
func mesh(spec string) string        { return d(KindMesh, "m", spec) }
func svc(name, spec string) string   { return d(KindService, name, spec) }

const v1 = `versions: [{name: v1, endpoints: [{address: 10.0.0.1, port: 1}]}]`

type errCase struct {
	name  string
	extra string // appended to base
	field string // the field path of the expected error
	msg   string // a substring of its message
	bare  bool   // extra replaces base
}

var errCases = []errCase{
	// empty files: a save caught half-way must not remove everything
	{name: "empty file", bare: true, extra: "", msg: "empty policy file: no documents"},
	{name: "only comments", bare: true, extra: "# the mesh\n# (nothing yet)\n", msg: "empty policy file: no documents"},
	{name: "only whitespace", bare: true, extra: "\n   \n\n", msg: "empty policy file: no documents"},
	// decoding
	{name: "list expected", extra: svc("s", "{versions: {name: v1}}"), field: "spec.versions", msg: "want a list, got a mapping"},
	{name: "mapping expected", extra: route("r", "{service: fraud, match: model}"), field: "spec.match", msg: `want a mapping, got "model"`},
	{name: "string expected", extra: route("r", "{service: [fraud]}"), field: "spec.service", msg: "want a string, got a list"},
	{name: "bool expected", extra: route("r", "{service: fraud, split: [{version: v1, weight: 100}], shadow: {version: v2, compare: yes}}"), field: "spec.shadow.compare", msg: "want true or false"},
	{name: "uint expected", extra: route("r", "{service: fraud, split: [{version: v1, weight: -5}, {version: v2, weight: 100}]}"), field: "spec.split[0].weight", msg: "want a whole number"},
	{name: "number expected", extra: route("r", "{service: fraud, split: [{version: v1, weight: 100}], shadow: {version: v2, percentage: lots}}"), field: "spec.shadow.percentage", msg: "want a finite number"},
	{name: "NaN rejected", extra: route("r", "{service: fraud, split: [{version: v1, weight: 100}], shadow: {version: v2, percentage: .nan}}"), field: "spec.shadow.percentage", msg: "want a finite number"},
	{name: "duration string", extra: route("r", "{service: fraud, split: [{version: v1, weight: 100}], timeout: 5}"), field: "spec.timeout", msg: "want a duration string"},
	{name: "bad duration", extra: route("r", "{service: fraud, split: [{version: v1, weight: 100}], timeout: 5 seconds}"), field: "spec.timeout", msg: `invalid duration "5 seconds"`},
	{name: "bad days", extra: route("r", "{service: fraud, split: [{version: v1, weight: 100}], timeout: xd}"), field: "spec.timeout", msg: `invalid duration "xd"`},
	{name: "negative duration", extra: route("r", "{service: fraud, split: [{version: v1, weight: 100}], timeout: -1s}"), field: "spec.timeout", msg: "negative duration"},
	{name: "unknown field", extra: route("r", "{service: fraud, spilt: []}"), field: "spec.spilt", msg: `unknown field "spilt" (known: service, target, match`},
	{name: "field twice", extra: route("r", "{service: fraud, service: churn}"), field: "spec.service", msg: `field "service" given twice`},
	{name: "map key twice", extra: "---\napiVersion: maestro.dev/v1alpha1\nkind: Service\nmetadata: {name: s, labels: {a: x, a: y}}\nspec: {" + v1 + "}\n", field: "metadata.labels.a", msg: `key "a" given twice`},
	// documents
	{name: "invalid yaml", extra: "---\nkind: [\n", field: "", msg: "invalid YAML"},
	{name: "document not mapping", extra: "---\n- a\n", field: "", msg: "a document must be a mapping"},
	{name: "top field twice", extra: "---\napiVersion: maestro.dev/v1alpha1\napiVersion: x\nkind: Route\n", field: "apiVersion", msg: `field "apiVersion" given twice`},
	{name: "kind not string", extra: "---\napiVersion: maestro.dev/v1alpha1\nkind: [Route]\n", field: "kind", msg: "want a string"},
	{name: "top unknown", extra: "---\napiVersion: maestro.dev/v1alpha1\nkind: Route\nstatus: {}\n", field: "status", msg: `unknown field "status"`},
	{name: "apiVersion", extra: "---\napiVersion: v1\nkind: Route\nmetadata: {name: r}\nspec: {}\n", field: "apiVersion", msg: `apiVersion "v1": want "maestro.dev/v1alpha1"`},
	{name: "endpoints on a route", extra: "---\napiVersion: maestro.dev/v1alpha1\nkind: Route\nmetadata: {name: r}\nspec: {service: fraud, split: [{version: v1, weight: 100}]}\nendpoints: []\n", field: "endpoints", msg: "only for kind Endpoints"},
	{name: "second mesh", extra: mesh("{}") + mesh("{}"), field: "", msg: "a second Mesh document; the first is at"},
	{name: "unknown kind", extra: d("VirtualService", "x", "{}"), field: "kind", msg: `unknown kind "VirtualService"`},
	{name: "metadata required", extra: "---\napiVersion: maestro.dev/v1alpha1\nkind: Route\nspec: {}\n", field: "metadata", msg: "metadata is required"},
	{name: "spec required", extra: "---\napiVersion: maestro.dev/v1alpha1\nkind: Route\nmetadata: {name: r}\n", field: "spec", msg: "spec is required"},
	{name: "bad name", extra: route("Fraud_2", "{}"), field: "metadata.name", msg: "must be a DNS label"},
	{name: "duplicate", extra: route("fraud", "{service: fraud, split: [{version: v1, weight: 100}]}"), field: "metadata.name", msg: `duplicate Route "fraud"; the first is at`},
	{name: "endpoints file missing", extra: svc("s", "{versions: [{name: v1, endpointsFile: testdata/nope.yaml}]}"), field: "spec.versions[0].endpointsFile", msg: "read endpoints"},
	{name: "endpoints file bad port", extra: svc("s", "{versions: [{name: v1, endpointsFile: testdata/eps-badport.yaml}]}"), field: "endpoints[0].port", msg: "port 0 is outside 1..65535"},
	{name: "endpoints file empty list", extra: svc("s", "{versions: [{name: v1, endpointsFile: testdata/eps-empty.yaml}]}"), field: "endpoints", msg: "no endpoints"},
	{name: "endpoints file kind", extra: svc("s", "{versions: [{name: v1, endpointsFile: testdata/eps-kind.yaml}]}"), field: "kind", msg: "want kind Endpoints with only"},
	{name: "endpoints file yaml", extra: svc("s", "{versions: [{name: v1, endpointsFile: testdata/eps-yaml.yaml}]}"), field: "", msg: "invalid YAML"},
	{name: "endpoints file empty", extra: svc("s", "{versions: [{name: v1, endpointsFile: testdata/eps-nothing.yaml}]}"), field: "", msg: "empty endpoints file"},
	// mesh
	{name: "trust domain", extra: mesh("{trustDomain: Bad_Domain}"), field: "spec.trustDomain", msg: "trust domain"},
	{name: "model header", extra: mesh("{modelHeader: X Model}"), field: "spec.modelHeader", msg: "is not a lower-case header name"},
	{name: "enum", extra: mesh("{mtls: {mode: strict}}"), field: "spec.mtls.mode", msg: `"strict" is not one of STRICT, PERMISSIVE, DISABLE`},
	{name: "vault missing", extra: mesh("{ca: {issuer: vault}}"), field: "spec.ca.vault", msg: "issuer vault needs the vault settings"},
	{name: "root ttl", extra: mesh("{ca: {builtin: {rootTtl: 1h}}, certificates: {ttl: 2h}}"), field: "spec.ca.builtin.rootTtl", msg: "root lifetime 1h0m0s is shorter"},
	{name: "rotateAt", extra: mesh("{certificates: {rotateAt: 1.5}}"), field: "spec.certificates.rotateAt", msg: "must be between 0 and 1"},
	{name: "vault address", extra: mesh("{ca: {issuer: vault, vault: {address: vault:8200, role: r, auth: {method: token}}}}"), field: "spec.ca.vault.address", msg: "must be an http(s) URL"},
	{name: "vault role", extra: mesh("{ca: {issuer: vault, vault: {address: 'https://v:8200', auth: {method: token}}}}"), field: "spec.ca.vault.role", msg: "the PKI role is required"},
	{name: "vault method", extra: mesh("{ca: {issuer: vault, vault: {address: 'https://v:8200', role: r}}}"), field: "spec.ca.vault.auth.method", msg: "auth method is required"},
	{name: "approle", extra: mesh("{ca: {issuer: vault, vault: {address: 'https://v:8200', role: r, auth: {method: approle, roleId: {env: R}}}}}"), field: "spec.ca.vault.auth", msg: "approle needs roleId and secretId"},
	{name: "kubernetes role", extra: mesh("{ca: {issuer: vault, vault: {address: 'https://v:8200', role: r, auth: {method: kubernetes}}}}"), field: "spec.ca.vault.auth.role", msg: "kubernetes auth needs the Vault role"},
	{name: "secret ref both", extra: mesh("{ca: {issuer: vault, vault: {address: 'https://v:8200', role: r, auth: {method: token, token: {env: T, file: /t}}}}}"), field: "spec.ca.vault.auth.token", msg: "give env or file, not both"},
	{name: "wasm both", extra: mesh("{filters: {slo: {path: /a.wasm, remote: {url: 'https://x/slo.wasm', sha256: " + strings.Repeat("ab", 32) + ", service: churn}}}}"), field: "spec.filters.slo", msg: "give path or remote, not both"},
	{name: "wasm url", extra: mesh("{filters: {slo: {remote: {url: 'ftp://x', sha256: " + strings.Repeat("ab", 32) + ", service: churn}}}}"), field: "spec.filters.slo.remote.url", msg: "must be an http(s) URL"},
	{name: "wasm sha", extra: mesh("{filters: {fanout: {remote: {url: 'https://x/f.wasm', sha256: abc, service: churn}}}}"), field: "spec.filters.fanout.remote.sha256", msg: "64 lower-case hex digits"},
	{name: "service required", extra: mesh("{tracing: {collector: {}}}"), field: "spec.tracing.collector.service", msg: "service is required"},
	{name: "tracing unknown service", extra: mesh("{tracing: {collector: {service: otel}}}"), field: "spec.tracing.collector.service", msg: `unknown Service "otel"`},
	{name: "tracing version ambiguous", extra: mesh("{tracing: {collector: {service: fraud}}}"), field: "spec.tracing.collector.version", msg: `Service "fraud" has 2 versions: name one`},
	{name: "tracing no version", extra: mesh("{tracing: {collector: {service: fraud, version: v9}}}"), field: "spec.tracing.collector.version", msg: `Service "fraud" has no version "v9"`},
	{name: "sampling", extra: mesh("{tracing: {collector: {service: churn}, samplingPercentage: 101}}"), field: "spec.tracing.samplingPercentage", msg: "101 is outside 0..100"},
	// services
	{name: "identity", extra: svc("s", "{identity: {namespace: A}, "+v1+"}"), field: "spec.identity.namespace", msg: `"A" must be a DNS label`},
	{name: "no versions", extra: svc("s", "{}"), field: "spec.versions", msg: "at least one version is required"},
	{name: "version name", extra: svc("s", "{versions: [{name: V1, endpoints: [{address: a, port: 1}]}]}"), field: "spec.versions[0].name", msg: `version name "V1" must be a DNS label`},
	{name: "version twice", extra: svc("s", "{versions: [{name: v1, endpoints: [{address: a, port: 1}]}, {name: v1, endpoints: [{address: a, port: 2}]}]}"), field: "spec.versions[1].name", msg: `version "v1" is also spec.versions[0]`},
	{name: "endpoints xor file", extra: svc("s", "{versions: [{name: v1}]}"), field: "spec.versions[0]", msg: "give endpoints or endpointsFile (exactly one)"},
	{name: "health timeout", extra: svc("s", "{healthCheck: {interval: 1s, timeout: 2s}, "+v1+"}"), field: "spec.healthCheck.timeout", msg: "timeout 2s is longer than the interval 1s"},
	{name: "health path on grpc", extra: svc("s", "{healthCheck: {path: /ready}, "+v1+"}"), field: "spec.healthCheck.path", msg: "is for http services and must start with /"},
	{name: "health grpc service on http", extra: svc("s", "{protocol: http, healthCheck: {grpcService: x}, "+v1+"}"), field: "spec.healthCheck.grpcService", msg: "grpcService is for grpc services"},
	{name: "ejection percent", extra: svc("s", "{outlierDetection: {maxEjectionPercent: 101}, "+v1+"}"), field: "spec.outlierDetection.maxEjectionPercent", msg: "101 is above 100"},
	{name: "endpoint address", extra: svc("s", "{versions: [{name: v1, endpoints: [{address: 'a b', port: 1}]}]}"), field: "spec.versions[0].endpoints[0].address", msg: "must be an IP address or host name"},
	{name: "endpoint port", extra: svc("s", "{versions: [{name: v1, endpoints: [{address: a, port: 70000}]}]}"), field: "spec.versions[0].endpoints[0].port", msg: "port 70000 is outside 1..65535"},
	// routes
	{name: "route service", extra: route("r", "{service: nope}"), field: "spec.service", msg: `unknown Service "nope"`},
	{name: "target", extra: route("r", "{service: churn, target: Bad.Target}"), field: "spec.target", msg: `target "Bad.Target" must be a DNS label`},
	{name: "target twice", extra: route("r", "{service: churn, target: fraud}"), field: "spec.target", msg: `proxyless target "fraud" is also Route "fraud"'s`},
	{name: "rule name", extra: route("r", "{service: churn, rules: [{name: A, headers: [{name: x, exact: y}], split: [{version: v1, weight: 100}]}]}"), field: "spec.rules[0].name", msg: `rule name "A" must be a DNS label`},
	{name: "rule rest", extra: route("r", "{service: churn, rules: [{name: rest, headers: [{name: x, exact: y}], split: [{version: v1, weight: 100}]}]}"), field: "spec.rules[0].name", msg: `rule name "rest" is reserved`},
	{name: "rule twice", extra: route("r", "{service: churn, rules: [{name: a, headers: [{name: x, exact: y}], split: [{version: v1, weight: 100}]}, {name: a, headers: [{name: x, exact: z}], split: [{version: v1, weight: 100}]}]}"), field: "spec.rules[1].name", msg: `rule "a" given twice`},
	{name: "rule headers", extra: route("r", "{service: churn, rules: [{name: a, split: [{version: v1, weight: 100}]}]}"), field: "spec.rules[0].headers", msg: "a rule needs at least one header match"},
	{name: "rule split", extra: route("r", "{service: churn, rules: [{name: a, headers: [{name: x, exact: y}]}]}"), field: "spec.rules[0].split", msg: "a rule needs a split"},
	{name: "no destination", extra: route("r", "{service: fraud}"), field: "spec.split", msg: "no destination"},
	{name: "shadow percentage", extra: route("r", "{service: fraud, split: [{version: v1, weight: 100}], shadow: {version: v2, percentage: 150}}"), field: "spec.shadow.percentage", msg: "150 is outside (0, 100]"},
	{name: "shadow model", extra: route("r", "{service: fraud, split: [{version: v1, weight: 100}], shadow: {version: v2, model: m}}"), field: "spec.shadow.model", msg: "model is only used with compare: true"},
	{name: "retries", extra: route("r", "{service: churn, retries: {attempts: 11}}"), field: "spec.retries.attempts", msg: "11 retries is above 10"},
	{name: "retry on", extra: route("r", "{service: churn, retries: {on: [sometimes]}}"), field: "spec.retries.on[0]", msg: `unknown retry condition "sometimes"`},
	{name: "per try", extra: route("r", "{service: churn, timeout: 1s, retries: {perTryTimeout: 2s}}"), field: "spec.retries.perTryTimeout", msg: "per-try timeout 2s is longer than the route timeout 1s"},
	{name: "match one", extra: route("r", "{service: churn, match: {model: a, path: /b}}"), field: "spec.match", msg: "give at most one of model, pathPrefix and path"},
	{name: "model slash", extra: route("r", "{service: churn, match: {model: a/b}}"), field: "spec.match.model", msg: "must not contain '/' or spaces"},
	{name: "protocol without model", extra: route("r", "{service: churn, match: {pathPrefix: /a, protocol: grpc}}"), field: "spec.match.protocol", msg: "protocol is only for model matches"},
	{name: "prefix slash", extra: route("r", "{service: churn, match: {pathPrefix: a}}"), field: "spec.match.pathPrefix", msg: `"a" must start with /`},
	{name: "path slash", extra: route("r", "{service: churn, match: {path: a}}"), field: "spec.match.path", msg: `"a" must start with /`},
	{name: "header name", extra: route("r", "{service: churn, match: {headers: [{name: X-A, exact: b}]}}"), field: "spec.match.headers[0].name", msg: `"X-A" is not a lower-case header name`},
	{name: "header one kind", extra: route("r", "{service: churn, match: {headers: [{name: x, exact: b, prefix: c}]}}"), field: "spec.match.headers[0]", msg: "give exactly one of exact, prefix, regex and present"},
	{name: "header regex", extra: route("r", "{service: churn, match: {headers: [{name: x, regex: '(a'}]}}"), field: "spec.match.headers[0].regex", msg: "invalid RE2 regular expression"},
	{name: "split twice", extra: route("r", "{service: fraud, split: [{version: v1, weight: 50}, {version: v1, weight: 50}]}"), field: "spec.split[1]", msg: "fraud version v1 is also spec.split[0]"},
	{name: "split sum", extra: route("r", "{service: fraud, split: [{version: v1, weight: 50}, {version: v2, weight: 40}]}"), field: "spec.split", msg: "weights sum to 90, want 100"},
	{name: "split service", extra: route("r", "{split: [{version: v1, weight: 100}]}"), field: "spec.split[0].service", msg: "service is required"},
	{name: "ensemble size", extra: route("r", "{service: fraud, ensemble: {members: [{version: v1, model: m}]}}"), field: "spec.ensemble.members", msg: "at least 2 members, got 1"},
	{name: "member twice", extra: route("r", "{service: fraud, match: {model: m}, ensemble: {members: [{version: v1}, {version: v1}]}}"), field: "spec.ensemble.members[1]", msg: "the same member as spec.ensemble.members[0]"},
	{name: "member model", extra: route("r", "{service: fraud, ensemble: {members: [{version: v1}, {version: v2, model: m}]}}"), field: "spec.ensemble.members[0].model", msg: "model is required"},
	{name: "member weight", extra: route("r", "{service: fraud, match: {model: m}, ensemble: {members: [{version: v1, weight: -1}, {version: v2}]}}"), field: "spec.ensemble.members[0].weight", msg: "weight -1 is negative"},
	{name: "quorum", extra: route("r", "{service: fraud, match: {model: m}, ensemble: {quorum: 3, members: [{version: v1}, {version: v2}]}}"), field: "spec.ensemble.quorum", msg: "quorum 3 is above the 2 members"},
	{name: "sequence strategy", extra: route("r", "{service: fraud, match: {model: m}, ensemble: {mode: sequence, strategy: mean, members: [{version: v1}, {version: v2}]}}"), field: "spec.ensemble.strategy", msg: "a sequence passes outputs on"},
	{name: "sequence quorum", extra: route("r", "{service: fraud, match: {model: m}, ensemble: {mode: sequence, quorum: 1, members: [{version: v1}, {version: v2}]}}"), field: "spec.ensemble.quorum", msg: "a sequence needs every member"},
	{name: "stacking needed", extra: route("r", "{service: fraud, match: {model: m}, ensemble: {strategy: stacking, members: [{version: v1}, {version: v2}]}}"), field: "spec.ensemble.stacking", msg: "strategy stacking needs the stacking meta-model"},
	{name: "stacking unused", extra: route("r", "{service: fraud, match: {model: m}, ensemble: {stacking: {weights: [1, 2]}, members: [{version: v1}, {version: v2}]}}"), field: "spec.ensemble.stacking", msg: "stacking is only for strategy stacking"},
	{name: "stacking weights", extra: route("r", "{service: fraud, match: {model: m}, ensemble: {strategy: stacking, stacking: {weights: [1]}, members: [{version: v1}, {version: v2}]}}"), field: "spec.ensemble.stacking.weights", msg: "1 weights for 2 members"},
	{name: "slo empty", extra: route("r", "{service: churn, slo: {}}"), field: "spec.slo", msg: "give at least one of availability, errorRate and latency"},
	{name: "availability", extra: route("r", "{service: churn, slo: {availability: 100}}"), field: "spec.slo.availability", msg: "100 is outside (0, 100): a percentage such as 99.9"},
	{name: "error rate", extra: route("r", "{service: churn, slo: {errorRate: -1}}"), field: "spec.slo.errorRate", msg: "-1 is outside (0, 100): a percentage such as 1"},
	{name: "percentile", extra: route("r", "{service: churn, slo: {latency: [{percentile: 100, threshold: 1s}]}}"), field: "spec.slo.latency[0].percentile", msg: "100 is outside (0, 100)"},
	{name: "percentile twice", extra: route("r", "{service: churn, slo: {latency: [{percentile: 99, threshold: 1s}, {percentile: 99, threshold: 2s}]}}"), field: "spec.slo.latency[1].percentile", msg: "percentile 99 given twice"},
	{name: "threshold", extra: route("r", "{service: churn, slo: {latency: [{percentile: 99}]}}"), field: "spec.slo.latency[0].threshold", msg: "a positive threshold"},
	{name: "slo window", extra: route("r", "{service: churn, slo: {availability: 99, window: 1h}}"), field: "spec.slo.window", msg: "window 1h0m0s is shorter than 1d"},
	{name: "burn window", extra: route("r", "{service: churn, slo: {availability: 99, window: 7d, burnWindows: [{window: 8d, burnRate: 1}]}}"), field: "spec.slo.burnWindows[0].window", msg: "must be positive and within the budget window"},
	{name: "burn rate", extra: route("r", "{service: churn, slo: {availability: 99, burnWindows: [{window: 1h}]}}"), field: "spec.slo.burnWindows[0].burnRate", msg: "burn rate 0 must be positive"},
	{name: "fault empty", extra: route("r", "{service: churn, fault: {}}"), field: "spec.fault", msg: "give delay, abort or both"},
	{name: "fault delay", extra: route("r", "{service: churn, fault: {delay: {percentage: 5}}}"), field: "spec.fault.delay.duration", msg: "a positive duration is required"},
	{name: "fault percent", extra: route("r", "{service: churn, fault: {delay: {percentage: 500, duration: 1s}}}"), field: "spec.fault.delay.percentage", msg: "500 is outside 0..100"},
	{name: "abort status", extra: route("r", "{service: churn, fault: {abort: {percentage: 5}}}"), field: "spec.fault.abort", msg: "give exactly one of httpStatus and grpcStatus"},
	{name: "abort http", extra: route("r", "{service: churn, fault: {abort: {percentage: 5, httpStatus: 700}}}"), field: "spec.fault.abort.httpStatus", msg: "700 is outside 200..599"},
	{name: "abort grpc", extra: route("r", "{service: churn, fault: {abort: {percentage: 5, grpcStatus: 17}}}"), field: "spec.fault.abort.grpcStatus", msg: "17 is outside 1..16"},
	// rollouts and adaptive ensembles
	{name: "rollout version", extra: route("r", "{service: fraud, split: [{version: v1, weight: 100}], rollout: {}}"), field: "spec.rollout.version", msg: "the version to promote is required"},
	{name: "rollout step range", extra: route("r", "{service: fraud, split: [{version: v1, weight: 100}], rollout: {version: v2, steps: [0, 100]}}"), field: "spec.rollout.steps[0]", msg: "step 0 is outside 1..100"},
	{name: "rollout step order", extra: route("r", "{service: fraud, split: [{version: v1, weight: 100}], rollout: {version: v2, steps: [50, 20, 100]}}"), field: "spec.rollout.steps[1]", msg: "step 20 is not above the step before it (50)"},
	{name: "rollout last step", extra: route("r", "{service: fraud, split: [{version: v1, weight: 100}], rollout: {version: v2, steps: [10, 50]}}"), field: "spec.rollout.steps", msg: "the last step is 50: a rollout ends at 100"},
	{name: "rollout interval", extra: route("r", "{service: fraud, split: [{version: v1, weight: 100}], rollout: {version: v2, stepInterval: 10ms}}"), field: "spec.rollout.stepInterval", msg: "step interval 10ms is shorter than 1s"},
	{name: "rollout error rate", extra: route("r", "{service: fraud, split: [{version: v1, weight: 100}], rollout: {version: v2, analysis: {maxErrorRate: 120}}}"), field: "spec.rollout.analysis.maxErrorRate", msg: "120 is outside (0, 100)"},
	{name: "rollout percentile", extra: route("r", "{service: fraud, split: [{version: v1, weight: 100}], rollout: {version: v2, analysis: {latency: [{percentile: 0, threshold: 1s}]}}}"), field: "spec.rollout.analysis.latency[0].percentile", msg: "0 is outside (0, 100)"},
	{name: "rollout percentile twice", extra: route("r", "{service: fraud, split: [{version: v1, weight: 100}], rollout: {version: v2, analysis: {latency: [{percentile: 99, threshold: 1s}, {percentile: 99, threshold: 2s}]}}}"), field: "spec.rollout.analysis.latency[1].percentile", msg: "percentile 99 given twice"},
	{name: "rollout threshold", extra: route("r", "{service: fraud, split: [{version: v1, weight: 100}], rollout: {version: v2, analysis: {latency: [{percentile: 99}]}}}"), field: "spec.rollout.analysis.latency[0].threshold", msg: "a positive threshold"},
	{name: "rollout burn negative", extra: route("r", "{service: fraud, split: [{version: v1, weight: 100}], slo: {availability: 99}, rollout: {version: v2, analysis: {slowBurnRate: -2}}}"), field: "spec.rollout.analysis.slowBurnRate", msg: "burn rate -2 must be positive"},
	{name: "rollout burn budget", extra: route("r", "{service: fraud, split: [{version: v1, weight: 100}], rollout: {version: v2, analysis: {fastBurnRate: 10}}}"), field: "spec.rollout.analysis.fastBurnRate", msg: "a burn rate needs an error budget"},
	{name: "rollout burn order", extra: route("r", "{service: fraud, split: [{version: v1, weight: 100}], slo: {availability: 99}, rollout: {version: v2, analysis: {fastBurnRate: 2, slowBurnRate: 6}}}"), field: "spec.rollout.analysis.fastBurnRate", msg: "fast burn rate 2 is below the slow one 6"},
	{name: "rollout agreement range", extra: route("r", "{service: fraud, split: [{version: v1, weight: 100}], shadow: {version: v2, compare: true}, rollout: {version: v2, analysis: {minAgreement: 101}}}"), field: "spec.rollout.analysis.minAgreement", msg: "101 is outside (0, 100]"},
	{name: "rollout agreement shadow", extra: route("r", "{service: fraud, split: [{version: v1, weight: 100}], rollout: {version: v2, analysis: {minAgreement: 95}}}"), field: "spec.rollout.analysis.minAgreement", msg: "agreement needs spec.shadow with compare: true"},
	{name: "rollout agreement version", extra: route("r", "{service: fraud, split: [{version: v1, weight: 100}], shadow: {version: v1, compare: true}, rollout: {version: v2, analysis: {minAgreement: 95}}}"), field: "spec.rollout.analysis.minAgreement", msg: "agreement is measured on the compared shadow, version \"v1\", not on \"v2\""},
	{name: "rollout split", extra: route("r", "{service: fraud, match: {model: m}, ensemble: {members: [{version: v1}, {version: v2}]}, rollout: {version: v2}}"), field: "spec.rollout", msg: "a rollout needs a split naming the stable version"},
	{name: "rollout stable", extra: route("r", "{service: fraud, split: [{version: v1, weight: 50}, {service: churn, version: v1, weight: 50}], rollout: {version: v2}}"), field: "spec.split", msg: "a rollout needs exactly one destination besides version \"v2\" (the stable version), found 2"},
	{name: "rollout unknown version", extra: route("r", "{service: fraud, split: [{version: v1, weight: 100}], rollout: {version: v9}}"), field: "spec.rollout.version", msg: "Service \"fraud\" has no version \"v9\""},
	{name: "rollout canary service", extra: route("r", "{service: fraud, split: [{version: v1, weight: 100}, {service: churn, version: v2, weight: 0}], rollout: {version: v2}}"), field: "spec.split[1]", msg: "the version promoted must be of the stable version's service \"fraud\""},
	{name: "adaptive without mode", extra: route("r", "{service: fraud, match: {model: m}, ensemble: {members: [{version: v1}, {version: v2}], adaptive: {minWeight: 0.1}}}"), field: "spec.ensemble.adaptive", msg: "adaptive settings need weights: adaptive"},
	{name: "adaptive strategy", extra: route("r", "{service: fraud, match: {model: m}, ensemble: {weights: adaptive, members: [{version: v1}, {version: v2}]}}"), field: "spec.ensemble.weights", msg: "weights: adaptive needs strategy weighted_mean or weighted_vote, not \"mean\""},
	{name: "adaptive weights enum", extra: route("r", "{service: fraud, match: {model: m}, ensemble: {weights: dynamic, members: [{version: v1}, {version: v2}]}}"), field: "spec.ensemble.weights", msg: "\"dynamic\" is not one of static, adaptive"},
	{name: "adaptive bounds", extra: route("r", "{service: fraud, match: {model: m}, ensemble: {strategy: weighted_mean, members: [{version: v1}, {version: v2}], weights: adaptive, adaptive: {minWeight: 2, maxWeight: 1}}}"), field: "spec.ensemble.adaptive.minWeight", msg: "minWeight 2 must be positive and below maxWeight 1"},
	{name: "adaptive interval", extra: route("r", "{service: fraud, match: {model: m}, ensemble: {strategy: weighted_mean, members: [{version: v1}, {version: v2}], weights: adaptive, adaptive: {interval: 100ms}}}"), field: "spec.ensemble.adaptive.interval", msg: "interval 100ms is shorter than 1s"},
	{name: "adaptive smoothing", extra: route("r", "{service: fraud, match: {model: m}, ensemble: {strategy: weighted_mean, members: [{version: v1}, {version: v2}], weights: adaptive, adaptive: {smoothing: 1.5}}}"), field: "spec.ensemble.adaptive.smoothing", msg: "1.5 is outside (0, 1]"},
	{name: "adaptive member weight", extra: route("r", "{service: fraud, match: {model: m}, ensemble: {strategy: weighted_vote, members: [{version: v1, weight: 3}, {version: v2}], weights: adaptive}}"), field: "spec.ensemble.members[0].weight", msg: "weight 3 is outside the adaptive bounds [0.05, 1]"},
	// gateways
	{name: "gateway port", extra: d(KindGateway, "g", "{routes: [fraud]}"), field: "spec.port", msg: "port 0 is outside 1..65535"},
	{name: "gateway routes", extra: d(KindGateway, "g", "{port: 80}"), field: "spec.routes", msg: "a gateway needs at least one route"},
	{name: "gateway unknown route", extra: d(KindGateway, "g", "{port: 80, routes: [nope]}"), field: "spec.routes[0]", msg: `unknown Route "nope"`},
	{name: "gateway route twice", extra: d(KindGateway, "g", "{port: 80, routes: [fraud, fraud]}"), field: "spec.routes[1]", msg: `Route "fraud" listed twice`},
	{name: "gateway host", extra: d(KindGateway, "g", "{port: 80, routes: [fraud], hosts: ['a/b']}"), field: "spec.hosts[0]", msg: "must be a host name, host:port or *"},
	{name: "gateway host twice", extra: d(KindGateway, "g", "{port: 80, routes: [fraud], hosts: [a, a]}"), field: "spec.hosts[1]", msg: `host "a" listed twice`},
	{name: "gateway conflict", extra: d(KindGateway, "g1", "{port: 80, routes: [fraud]}") + d(KindGateway, "g2", "{port: 81, routes: [fraud]}"), field: "spec.nodes", msg: `Gateway "g1" (`},
	// sidecars
	{name: "sidecar service", extra: d(KindSidecar, "s", "{service: nope, inbound: {appPort: 1}}"), field: "spec.service", msg: `unknown Service "nope"`},
	{name: "sidecar twice", extra: d(KindSidecar, "s", "{service: fraud, inbound: {appPort: 1}}"), field: "spec.service", msg: `is already the sidecar of Service "fraud"`},
	{name: "app port", extra: d(KindSidecar, "s", "{service: churn, inbound: {port: 8000, appPort: 8000}}"), field: "spec.inbound.appPort", msg: "the application port 8000 is the inbound listener's"},
	{name: "outbound port", extra: d(KindSidecar, "s", "{service: churn, inbound: {appPort: 1}, outbound: {port: 15006, routes: [fraud]}}"), field: "spec.outbound.port", msg: "port 15006 is also the inbound port"},
	{name: "outbound routes", extra: d(KindSidecar, "s", "{service: churn, inbound: {appPort: 1}, outbound: {}}"), field: "spec.outbound.routes", msg: "outbound needs at least one route"},
	{name: "proxyless protocol", extra: d(KindSidecar, "s", "{service: churn, mode: proxyless, inbound: {port: 9004}}"), field: "spec.mode", msg: `mode proxyless is for grpc services: Service "churn" speaks http`},
	{name: "proxyless app port", extra: svc("g", "{"+v1+"}") + d(KindSidecar, "s", "{service: g, mode: proxyless, inbound: {port: 1, appPort: 2}}"), field: "spec.inbound.appPort", msg: "appPort is for mode envoy"},
	{name: "proxyless outbound", extra: svc("g", "{"+v1+"}") + d(KindSidecar, "s", "{service: g, mode: proxyless, inbound: {port: 1}, outbound: {routes: [fraud]}}"), field: "spec.outbound", msg: "outbound is for mode envoy"},
	{name: "proxyless port", extra: svc("g", "{"+v1+"}") + d(KindSidecar, "s", "{service: g, mode: proxyless, inbound: {port: 70000}}"), field: "spec.inbound.port", msg: "port 70000 is outside 1..65535"},
	// authorization
	{name: "authz service", extra: d(KindAuthorization, "a", "{service: nope}"), field: "spec.service", msg: `unknown Service "nope"`},
	{name: "authz sidecar", extra: d(KindAuthorization, "a", "{service: churn}"), field: "spec.service", msg: `Service "churn" has no Sidecar`},
	{name: "authz actions", extra: d(KindAuthorization, "a", "{service: fraud}") + d(KindAuthorization, "b", "{service: fraud, action: DENY}"), field: "spec.action", msg: `already has ALLOW policy "a"`},
	{name: "authz rule name", extra: d(KindAuthorization, "a", "{service: fraud, rules: [{name: R}]}"), field: "spec.rules[0].name", msg: `rule name "R" must be a DNS label`},
	{name: "authz rule twice", extra: d(KindAuthorization, "a", "{service: fraud, rules: [{name: r}, {name: r}]}"), field: "spec.rules[1].name", msg: `rule "r" given twice`},
	{name: "authz identity", extra: d(KindAuthorization, "a", "{service: fraud, rules: [{name: r, from: {identities: [bob]}}]}"), field: "spec.rules[0].from.identities[0]", msg: `"bob" is not a SPIFFE ID`},
	{name: "authz namespace", extra: d(KindAuthorization, "a", "{service: fraud, rules: [{name: r, from: {namespaces: [NS]}}]}"), field: "spec.rules[0].from.namespaces[0]", msg: `"NS" must be a DNS label`},
	{name: "authz empty namespace", extra: d(KindAuthorization, "a", "{service: fraud, rules: [{name: r, from: {namespaces: [empty]}}]}"), field: "spec.rules[0].from.namespaces[0]", msg: `namespace "empty" has no Service or Gateway identities`},
	{name: "authz from service", extra: d(KindAuthorization, "a", "{service: fraud, rules: [{name: r, from: {services: [nope]}}]}"), field: "spec.rules[0].from.services[0]", msg: `unknown Service "nope"`},
	{name: "authz from gateway", extra: d(KindAuthorization, "a", "{service: fraud, rules: [{name: r, from: {gateways: [nope]}}]}"), field: "spec.rules[0].from.gateways[0]", msg: `unknown Gateway "nope"`},
	{name: "authz model", extra: d(KindAuthorization, "a", "{service: fraud, rules: [{name: r, to: {models: ['a b']}}]}"), field: "spec.rules[0].to.models[0]", msg: "must be non-empty, without '/' or spaces"},
	{name: "authz model twice", extra: d(KindAuthorization, "a", "{service: fraud, rules: [{name: r, to: {models: [m, m]}}]}"), field: "spec.rules[0].to.models[1]", msg: `model "m" listed twice`},
	{name: "authz route", extra: d(KindAuthorization, "a", "{service: fraud, rules: [{name: r, to: {routes: [nope]}}]}"), field: "spec.rules[0].to.routes[0]", msg: `unknown Route "nope"`},
	{name: "authz path", extra: d(KindAuthorization, "a", "{service: fraud, rules: [{name: r, to: {paths: [x]}}]}"), field: "spec.rules[0].to.paths[0]", msg: `"x" must start with /`},
	{name: "authz prefix", extra: d(KindAuthorization, "a", "{service: fraud, rules: [{name: r, to: {pathPrefixes: [x]}}]}"), field: "spec.rules[0].to.pathPrefixes[0]", msg: `"x" must start with /`},
}

// loadCase writes the case into a temporary directory (beside a copy of
// testdata, so endpoints files resolve) and loads it.
func loadCase(t *testing.T, c errCase) error {
	t.Helper()
	text := base + c.extra
	if c.bare {
		text = c.extra
	}
	_, err := Parse("policy.yaml", []byte(text))
	return err
}

func TestValidationErrors(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range errCases {
		if seen[c.name] {
			t.Fatalf("case name %q used twice", c.name)
		}
		seen[c.name] = true
	}
	for _, c := range errCases {
		t.Run(c.name, func(t *testing.T) {
			err := loadCase(t, c)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want an ErrorList", err)
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("errors.As ErrorList failed on %v", err)
			}
			for _, e := range list {
				if e.Field == c.field && strings.Contains(e.Message, c.msg) {
					if e.Line == 0 && c.field != "" {
						t.Errorf("error %q has no line", e)
					}
					return
				}
			}
			t.Errorf("no error at %q containing %q; got:\n%v", c.field, c.msg, err)
		})
	}
}

// TestEveryMessageHasACase finds every error format string in the
// package's source and checks some case's error matches it, so a new
// message cannot be added without a test.
func TestEveryMessageHasACase(t *testing.T) {
	var msgs []string
	_, bombErr := Parse("bomb.yaml", bomb())
	for _, c := range append(errCases, errCase{}) {
		err := bombErr
		if c.name != "" {
			err = loadCase(t, c)
		}
		var list ErrorList
		if errors.As(err, &list) {
			for _, e := range list {
				msgs = append(msgs, e.Message)
			}
		}
	}
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	// Calls whose format argument becomes an Error's message, with the
	// index of that argument.
	formatArg := map[string]int{"bad": 1, "fail": 2, "at": 2, "in": 4}
	var formats []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			i, ok := formatArg[sel.Sel.Name]
			if !ok || len(call.Args) <= i {
				return true
			}
			if lit, ok := call.Args[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				s, err := strconv.Unquote(lit.Value)
				if err == nil {
					formats = append(formats, s)
				}
			}
			return true
		})
	}
	if len(formats) < 50 {
		t.Fatalf("found only %d message formats; is the source scan broken?", len(formats))
	}
	verb := regexp.MustCompile(`%[-+# 0-9.]*[vqdsfgwx]`)
	for _, f := range formats {
		if f == "%v" || f == "cannot decode into %s" {
			continue // wraps another message / unreachable (TestTypesDecodable)
		}
		parts := verb.Split(f, -1)
		for i := range parts {
			parts[i] = regexp.QuoteMeta(parts[i])
		}
		re := regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
		found := false
		for _, m := range msgs {
			if re.MatchString(m) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no validation case produces %q", f)
		}
	}
}

func TestSuggestions(t *testing.T) {
	for _, c := range []struct{ extra, want string }{
		{d(KindGateway, "g", "{port: 80, routes: [fruad]}"), `unknown Route "fruad" (did you mean "fraud"?)`},
		{route("r", "{service: churm}"), `unknown Service "churm" (did you mean "churn"?)`},
		{route("r", "{service: fraud, split: [{version: v3, weight: 100}]}"), `has no version "v3" (did you mean "v1"?)`},
		{route("r", "{service: nothing-like-it}"), `unknown Service "nothing-like-it"` + "\n"},
	} {
		_, err := Parse("p.yaml", []byte(base+c.extra))
		if err == nil || !strings.Contains(err.Error()+"\n", c.want) {
			t.Errorf("got %v, want it to contain %q", err, c.want)
		}
	}
	if d := editDistance("kitten", "sitting", 10); d != 3 {
		t.Errorf("editDistance = %d, want 3", d)
	}
}
