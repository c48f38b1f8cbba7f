"""Evaluates the ValidatingAdmissionPolicies in the rendered manifests against a table of admission
requests, as the API server would: match (resource, subresource, operation), then matchConditions,
then variables and validations, with the messages an operator would read. The CEL implementation is
PyPI's common-expression-language; the expressions keep to what it and Kubernetes' CEL both accept.
scripts/check-manifests.sh runs it. Prints one line per case and exits 1 if any case is not as expected.

With --replay, it evaluates instead every write the scenarios recorded (the test API server's --record:
one admission request per line, with userInfo, operation, subResource, name, oldObject and object) and
requires every one to be allowed: the policies must let the product do what it really does. It prints the
writes per identity, a FAIL line for each refused one, and fails when a file holds no write at all. The
scenario's own writes (group wgmesh:test-harness: Nodes registered as a kubelet would, faults injected as
etcd surgery would) are not the product's: they are counted, with how many the policies refuse, not judged.
scripts/test.sh runs it on the scenarios' writes.

usage: check-admission-policies.py RENDERED.yaml
       check-admission-policies.py --replay RENDERED.yaml WRITES.jsonl...
"""
import collections
import copy
import json
import sys

import cel
import yaml

AGENT = "system:serviceaccount:wgmesh-system:wgmesh-agent"
CONTROLLER = "system:serviceaccount:wgmesh-system:wgmesh-controller"
W = "wgmesh.dev/"
HARNESS = "wgmesh:test-harness"


def node(name):
    """A Node as a kubelet registers it and wgmesh annotates it."""
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name, "uid": f"uid-{name}", "resourceVersion": "4711", "creationTimestamp": "2026-11-27T02:00:00Z",
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "node-role.kubernetes.io/control-plane": ""},
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                W + "pod-cidrs": "10.244.1.0/24,fd00:10:244:1::/64", W + "public-key": "pub-" + name,
                W + "sealed-private-key": "sealed-" + name, W + "key-generation": "1", W + "key-issued-at": "2026-11-27T02:01:00Z",
                W + "sealed-to": "enrol-" + name, W + "endpoint": "192.0.2.1:51820",
                W + "enrollment-key": "enrol-" + name, W + "applied-key-generation": "1",
                W + "cluster-cidrs": "10.244.0.0/16,fd00:10:244::/48", W + "strict": "true",
                W + "applied-peers": "sha256:" + "0" * 64, W + "unencrypted-drops": "packets=0,counter=0",
            },
        },
        "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"],
                 "taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]},
        "status": {
            "conditions": [
                {"type": t, "status": "False", "reason": "Kubelet" + t, "message": "ok", "lastHeartbeatTime": "2026-11-27T02:30:00Z",
                 "lastTransitionTime": "2026-11-27T02:00:00Z"} for t in ("MemoryPressure", "DiskPressure", "PIDPressure")
            ] + [
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                 "lastHeartbeatTime": "2026-11-27T02:30:00Z", "lastTransitionTime": "2026-11-27T02:00:00Z"},
                {"type": "WireGuardMeshReady", "status": "True", "reason": "AllPeersHandshaked", "message": "2/2 peers handshaked within 180s",
                 "lastHeartbeatTime": "2026-11-27T02:30:00Z", "lastTransitionTime": "2026-11-27T02:30:00Z"},
            ],
            "addresses": [{"type": "InternalIP", "address": "192.0.2.1"}, {"type": "Hostname", "address": name}],
            "nodeInfo": {"kubeletVersion": "v1.32.4", "containerRuntimeVersion": "containerd://2.0.5"},
        },
    }


def user(name, node_name=None):
    """userInfo as the authenticator gives it: a Pod-bound service-account token carries its node."""
    if name.startswith("system:serviceaccount:"):
        info = {"username": name, "uid": "sa-uid", "groups": ["system:serviceaccounts", "system:serviceaccounts:wgmesh-system", "system:authenticated"]}
        if node_name:
            info["extra"] = {"authentication.kubernetes.io/credential-id": ["JTI=0f3c"], "authentication.kubernetes.io/node-name": [node_name],
                             "authentication.kubernetes.io/node-uid": ["uid-" + node_name], "authentication.kubernetes.io/pod-name": ["wgmesh-agent-x7k2p"],
                             "authentication.kubernetes.io/pod-uid": ["pod-uid"]}
        return info
    if name.startswith("system:node:"):
        return {"username": name, "groups": ["system:nodes", "system:authenticated"]}
    return {"username": name, "groups": ["kubeadm:cluster-admins", "system:authenticated"]}


def request(who, old, new, subresource="", operation="UPDATE"):
    target = new or old
    return {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "kind": {"group": "", "version": "v1", "kind": "Node"},
        "resource": {"group": "", "version": "v1", "resource": "nodes"}, "subResource": subresource,
        "requestKind": {"group": "", "version": "v1", "kind": "Node"}, "name": target["metadata"]["name"],
        "operation": operation, "userInfo": who, "dryRun": False,
    }, old, new


def changed(name, change):
    old = node(name)
    new = copy.deepcopy(old)
    change(new)
    return old, new


def annotate(**values):
    def change(n):
        for k, v in values.items():
            key = W + k.replace("_", "-")
            if v is None:
                n["metadata"]["annotations"].pop(key, None)
            else:
                n["metadata"]["annotations"][key] = v
    return change


def set_condition(kind, status):
    def change(n):
        for c in n["status"]["conditions"]:
            if c["type"] == kind:
                c["status"] = status
                c["lastTransitionTime"] = "2026-11-27T02:40:00Z"
    return change


def drop_condition(kind):
    def change(n):
        n["status"]["conditions"] = [c for c in n["status"]["conditions"] if c["type"] != kind]
    return change


def uninstall(n):
    for k in [k for k in n["metadata"]["annotations"] if k.startswith(W)]:
        del n["metadata"]["annotations"][k]


AGENT_KEYS = ["enrollment-key", "applied-key-generation", "cluster-cidrs", "strict", "applied-peers", "unencrypted-drops"]
UNKNOWN = "it is an unknown key (misspelt?); the known ones: the controller writes wgmesh.dev/pod-cidrs, "


def cases():
    """(what, request, old, new, expected): expected is None (allowed) or the message parts of every refusal."""
    a1 = user(AGENT, "n1")
    admin = user("kubernetes-admin")
    controller = user(CONTROLLER)
    fresh_agent = node("n1")
    for k in AGENT_KEYS:
        del fresh_agent["metadata"]["annotations"][W + k]
    first = copy.deepcopy(fresh_agent)
    first["metadata"]["annotations"].update({W + "enrollment-key": "enrol-n1", W + "cluster-cidrs": "10.244.0.0/16,fd00:10:244::/48", W + "strict": "true"})
    yield ("agent's first patch: enrollment key and settings", *request(a1, fresh_agent, first), None)
    for k in AGENT_KEYS:
        yield (f"agent changes its {k}", *request(a1, *changed("n1", annotate(**{k.replace("-", "_"): "changed"}))), None)
    yield ("agent reports applied peers and drops", *request(a1, *changed("n1", annotate(applied_peers="sha256:" + "1" * 64,
                                                                                         unencrypted_drops="packets=3,counter=3"))), None)
    yield ("agent publishes its own enrollment key", *request(a1, *changed("n1", annotate(enrollment_key="enrol-new"))), None)
    yield ("agent publishes its applied key generation", *request(a1, *changed("n1", annotate(applied_key_generation="2"))), None)
    yield ("agent writes its condition (nodes/status)", *request(a1, *changed("n1", set_condition("WireGuardMeshReady", "False")), "status"), None)
    yield ("agent --cleanup removes its six annotations", *request(a1, *changed("n1", annotate(**{k.replace("-", "_"): None for k in AGENT_KEYS}))), None)
    yield ("agent --cleanup removes its condition (nodes/status)", *request(a1, *changed("n1", drop_condition("WireGuardMeshReady")), "status"), None)
    yield ("agent writes another node's enrollment key", *request(a1, *changed("n2", annotate(enrollment_key="attacker"))),
           ["wgmesh-agent-own-node: the wgmesh agent on node n1 may not change Node n2: an agent changes only its own Node"])
    yield ("agent writes another node's condition (nodes/status)", *request(a1, *changed("n2", set_condition("WireGuardMeshReady", "False")), "status"),
           ["wgmesh-agent-own-node: the wgmesh agent on node n1 may not change Node n2"])
    yield ("agent token without a node name", *request(user(AGENT), *changed("n1", annotate(enrollment_key="enrol-new"))),
           ["wgmesh-agent-own-node: the wgmesh agent's token names no node (no authentication.kubernetes.io/node-name in its user extra)"])
    yield ("agent publishes its own public key (a controller key)", *request(a1, *changed("n1", annotate(public_key="attacker"))),
           ["wgmesh-agent-own-node: the wgmesh agent may not change annotation wgmesh.dev/public-key of Node n1: it writes only",
            f"wgmesh-annotation-owners: {AGENT} may not set wgmesh.dev/public-key on Node n1: only the wgmesh controller writes it"])
    yield ("agent removes its Pod CIDRs (a controller key)", *request(a1, *changed("n1", annotate(pod_cidrs=None))),
           ["wgmesh-agent-own-node: the wgmesh agent may not change annotation wgmesh.dev/pod-cidrs of Node n1"])
    yield ("agent sets an endpoint override", *request(a1, *changed("n1", annotate(endpoint_override="198.51.100.7:51820"))),
           ["wgmesh-agent-own-node: the wgmesh agent may not change annotation wgmesh.dev/endpoint-override of Node n1: it writes only its own keys, "
            "wgmesh.dev/enrollment-key, wgmesh.dev/applied-key-generation, wgmesh.dev/cluster-cidrs, wgmesh.dev/strict, wgmesh.dev/applied-peers, "
            "wgmesh.dev/unencrypted-drops",
            f"wgmesh-annotation-owners: {AGENT} may not set wgmesh.dev/endpoint-override on Node n1: only people write it"])
    yield ("agent changes a label", *request(a1, *changed("n1", lambda n: n["metadata"]["labels"].update(role="gateway"))),
           ["wgmesh-agent-own-node: the wgmesh agent may not change the labels of Node n1"])
    yield ("agent removes a taint", *request(a1, *changed("n1", lambda n: n["spec"].pop("taints"))),
           ["wgmesh-agent-own-node: the wgmesh agent may not change the spec (taints, Pod CIDRs, unschedulable) of Node n1"])
    yield ("agent marks its node NotReady (nodes/status)", *request(a1, *changed("n1", set_condition("Ready", "False")), "status"),
           ["wgmesh-agent-own-node: the wgmesh agent may change only the WireGuardMeshReady condition of Node n1"])
    yield ("agent changes its node's addresses (nodes/status)",
           *request(a1, *changed("n1", lambda n: n["status"]["addresses"].__setitem__(0, {"type": "InternalIP", "address": "203.0.113.9"})), "status"),
           ["wgmesh-agent-own-node: the wgmesh agent may not change the addresses of Node n1"])
    yield ("controller issues a keypair", *request(user(CONTROLLER), *changed("n2", annotate(public_key="pub-2", sealed_private_key="s", key_generation="2"))), None)
    yield ("controller stages a rotation and answers the request",
           *request(user(CONTROLLER), *changed("n1", annotate(next_public_key="next", next_sealed_private_key="s", rotate_answered="t1"))), None)
    yield ("controller writes an enrollment key", *request(user(CONTROLLER), *changed("n1", annotate(enrollment_key="attacker"))),
           [f"wgmesh-annotation-owners: {CONTROLLER} may not set wgmesh.dev/enrollment-key on Node n1: only the node's wgmesh agent writes it"])
    yield ("controller sets an unknown key", *request(controller, *changed("n1", annotate(mtu="1380"))),
           [f"wgmesh-annotation-owners: {CONTROLLER} may not set wgmesh.dev/mtu on Node n1: " + UNKNOWN])
    yield ("controller sets an endpoint override (a people key)", *request(controller, *changed("n1", annotate(endpoint_override="198.51.100.7:51820"))),
           [f"wgmesh-annotation-owners: {CONTROLLER} may not set wgmesh.dev/endpoint-override on Node n1: only people write it"])
    yield ("controller asks for a rotation (a people key)", *request(controller, *changed("n1", annotate(rotate_request="t2"))),
           [f"wgmesh-annotation-owners: {CONTROLLER} may not set wgmesh.dev/rotate-request on Node n1: only people write it"])
    yield ("controller writes an agent report key", *request(controller, *changed("n1", annotate(strict="false"))),
           [f"wgmesh-annotation-owners: {CONTROLLER} may not set wgmesh.dev/strict on Node n1: only the node's wgmesh agent writes it"])
    yield ("admin sets an endpoint override", *request(admin, *changed("n1", annotate(endpoint_override="198.51.100.7:51820"))), None)
    yield ("admin asks for a rotation", *request(admin, *changed("n1", annotate(rotate_request="2026-11-27T03:00:00Z-1234"))), None)
    yield ("admin accepts a node's new enrollment key", *request(admin, *changed("n1", annotate(accept_enrollment="SHA256:28hdgtSkWzeMZb7wQi/zYa9v3KDWMEsmfglAPxlY9e4"))), None)
    yield ("controller uses up an acceptance", *request(user(CONTROLLER), *changed("n1", annotate(accept_enrollment=None, sealed_to="enrol-new", public_key="p2"))), None)
    yield ("agent accepts its own new enrollment key", *request(a1, *changed("n1", annotate(enrollment_key="attacker", accept_enrollment="SHA256:x"))),
           ["wgmesh-agent-own-node: the wgmesh agent may not change annotation wgmesh.dev/accept-enrollment of Node n1",
            f"wgmesh-annotation-owners: {AGENT} may not set wgmesh.dev/accept-enrollment on Node n1: only people write it"])
    yield ("admin uninstalls: every wgmesh.dev/ annotation removed", *request(admin, *changed("n1", uninstall)), None)
    yield ("admin labels a node (no wgmesh.dev/ key written)", *request(admin, *changed("n1", lambda n: n["metadata"]["labels"].update(role="gateway"))), None)
    yield ("admin publishes a public key", *request(admin, *changed("n1", annotate(public_key="mine"))),
           ["wgmesh-annotation-owners: kubernetes-admin may not set wgmesh.dev/public-key on Node n1: only the wgmesh controller writes it; "
            "people set only wgmesh.dev/endpoint-override, wgmesh.dev/rotate-request, wgmesh.dev/accept-enrollment, and may remove wgmesh.dev/ annotations"])
    yield ("admin misspells endpoint-override", *request(admin, *changed("n1", annotate(endpoint_overide="198.51.100.7:51820"))),
           ["wgmesh-annotation-owners: kubernetes-admin may not set wgmesh.dev/endpoint-overide on Node n1: " + UNKNOWN])
    yield ("agent misspells one of its keys", *request(a1, *changed("n1", annotate(aplied_key_generation="2"))),
           ["wgmesh-agent-own-node: the wgmesh agent may not change annotation wgmesh.dev/aplied-key-generation of Node n1",
            f"wgmesh-annotation-owners: {AGENT} may not set wgmesh.dev/aplied-key-generation on Node n1: " + UNKNOWN])
    yield ("admin writes an agent report key", *request(admin, *changed("n1", annotate(applied_peers="sha256:forged"))),
           ["wgmesh-annotation-owners: kubernetes-admin may not set wgmesh.dev/applied-peers on Node n1: only the node's wgmesh agent writes it"])
    yield ("kubelet writes its node's enrollment key", *request(user("system:node:n1"), *changed("n1", annotate(enrollment_key="other"))),
           ["wgmesh-annotation-owners: system:node:n1 may not set wgmesh.dev/enrollment-key on Node n1: only the node's wgmesh agent writes it"])
    yield ("kubelet updates its status (nodes/status)", *request(user("system:node:n1"), *changed("n1", set_condition("Ready", "False")), "status"), None)
    fresh = node("n3")
    fresh["metadata"]["annotations"] = {"node.alpha.kubernetes.io/ttl": "0"}
    yield ("kubelet registers a Node", *request(user("system:node:n3"), None, fresh, operation="CREATE"), None)
    forged = node("n3")
    yield ("kubelet registers a Node with wgmesh.dev/ keys", *request(user("system:node:n3"), None, forged, operation="CREATE"),
           ["wgmesh-annotation-owners: system:node:n3 may not set wgmesh.dev/"])


def matches(policy, req):
    resource = req["resource"]["resource"] + ("/" + req["subResource"] if req["subResource"] else "")
    for rule in policy["spec"]["matchConstraints"]["resourceRules"]:
        if req["resource"]["group"] in rule["apiGroups"] and resource in rule["resources"] and req["operation"] in rule["operations"]:
            return True
    return False


def evaluate(policy, req, old, new):
    """The messages of the failed validations; [] when admitted. An expression that fails to evaluate
    raises: with failurePolicy Fail, the API server would refuse every such request."""
    spec = policy["spec"]
    context = {"request": req, "object": new, "oldObject": old}
    if not matches(policy, req) or not all(cel.evaluate(c["expression"], context) for c in spec.get("matchConditions", [])):
        return []
    variables = {}
    for v in spec.get("variables", []):
        variables[v["name"]] = cel.evaluate(v["expression"], {**context, "variables": variables})
    context["variables"] = variables
    failed = []
    for v in spec["validations"]:
        result = cel.evaluate(v["expression"], context)
        if not isinstance(result, bool):
            raise TypeError(f"{v['expression']!r} gave {result!r}, not a bool")
        if not result:
            failed.append(cel.evaluate(v["messageExpression"], context) if "messageExpression" in v else v["message"])
    return failed


def load_policies(rendered):
    with open(rendered, encoding="utf-8") as f:
        objects = [o for o in yaml.safe_load_all(f) if o]
    return objects, [o for o in objects if o["kind"] == "ValidatingAdmissionPolicy"]


def key_texts(policies):
    """Each XKeysText variable must spell its XKeys list, in order: the messages name the keys the policy allows."""
    bad = []
    for p in policies:
        expressions = {v["name"]: v["expression"] for v in p["spec"].get("variables", [])}
        for name, expression in expressions.items():
            if name.endswith("KeysText"):
                keys = cel.evaluate(expressions[name[: -len("Text")]], {})
                if cel.evaluate(expression, {}) != ", ".join(keys):
                    bad.append(f"policy {p['metadata']['name']}: variable {name} does not spell {name[:-len('Text')]} ({', '.join(keys)})")
    return bad


def identity(info):
    node_name = (info.get("extra") or {}).get("authentication.kubernetes.io/node-name", [])
    return info.get("username", "?") + (f" (node {node_name[0]})" if node_name else "")


def changes(old, new):
    """What a write changed that the policies look at: annotation keys, labels, spec, conditions, addresses."""
    def part(o, *path):
        for p in path:
            o = (o or {}).get(p)
        return o
    before, after = part(old, "metadata", "annotations") or {}, part(new, "metadata", "annotations") or {}
    if old is None or new is None:  # CREATE or DELETE: the wgmesh.dev/ keys it carries
        return "the Node, with " + (", ".join(sorted(k for k in before or after if k.startswith(W))) or "no wgmesh.dev/ key")
    what = [k + ("" if k in after else " (removed)") for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
    for label, path in (("labels", ("metadata", "labels")), ("spec", ("spec",)), ("addresses", ("status", "addresses"))):
        if part(old, *path) != part(new, *path):
            what.append(label)
    conditions = {c.get("type"): c for c in part(old, "status", "conditions") or []}
    for c in part(new, "status", "conditions") or []:
        if conditions.pop(c.get("type"), None) != c:
            what.append("condition " + str(c.get("type")))
    what += ["condition " + str(t) + " (removed)" for t in conditions]
    return ", ".join(what) or "nothing"


def defaulted(obj):
    """A Node as admission sees it after the API server's defaulting: spec and status always present, if empty
    (the test API server stores what it was sent)."""
    if obj is None:
        return None
    return {**obj, "spec": obj.get("spec") or {}, "status": obj.get("status") or {}}


def replay(rendered, files):
    """Every recorded write must be allowed by the policies."""
    _, policies = load_policies(rendered)
    bad, counts, harness_refused = key_texts(policies), collections.Counter(), 0
    if not files:
        bad.append("no writes file given")
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                lines = [(i, line) for i, line in enumerate(f, 1) if line.strip()]
        except OSError as e:
            bad.append(f"{path}: {e}")
            continue
        print(f"replay: {path}: {len(lines)} writes")
        if not lines:
            bad.append(f"{path}: no write recorded: the scenario ran without --record, or wrote nothing to a Node")
        for number, line in lines:
            write = json.loads(line)
            # A write records its resource (a Node or a Peer); older records are all Nodes'.
            kind = write.get("kind", {"group": "", "version": "v1", "kind": "Node"})
            req = {"uid": f"{path}:{number}", "kind": kind,
                   "resource": write.get("resource", {"group": "", "version": "v1", "resource": "nodes"}),
                   "subResource": write.get("subResource", ""), "requestKind": kind, "name": write["name"],
                   "operation": write["operation"], "userInfo": write["userInfo"], "dryRun": False}
            who = identity(write["userInfo"])
            harness = HARNESS in write["userInfo"].get("groups", [])
            counts[who + (" (test harness: not judged)" if harness else "")] += 1
            try:
                messages = [m for p in policies for m in evaluate(p, req, defaulted(write.get("oldObject")), defaulted(write.get("object")))]
            except Exception as e:  # noqa: BLE001: the API server refuses what fails to evaluate (failurePolicy Fail)
                messages = [f"evaluation failed: {type(e).__name__}: {e}"]
            if messages and harness:
                harness_refused += 1
            elif messages:
                resource = req["resource"]["resource"] + ("/" + req["subResource"] if req["subResource"] else "")
                bad.append(f"{path}:{number}: {who}: {write['operation']} {resource} {write['name']}, changed "
                           f"{changes(write.get('oldObject'), write.get('object'))}: refused: " + " | ".join(messages))
    for who, n in sorted(counts.items()):
        print(f"replay: {n:5d} writes by {who}" + (f", {harness_refused} of them refused" if "test harness" in who else ""))
    for b in bad:
        print(f"FAIL {b}")
    judged = sum(n for who, n in counts.items() if "test harness" not in who)
    refused = len([b for b in bad if ": refused: " in b])
    print(f"admission replay: {judged} writes of the product from {len(files)} file(s), {judged - refused} allowed, {len(bad)} failed")
    return 1 if bad else 0


def main(rendered):
    objects, policies = load_policies(rendered)
    bound = {o["spec"]["policyName"] for o in objects if o["kind"] == "ValidatingAdmissionPolicyBinding" and "Deny" in o["spec"]["validationActions"]}
    bad = [f"policy {p['metadata']['name']} has no binding that denies" for p in policies if p["metadata"]["name"] not in bound]
    bad += [f"policy {p['metadata']['name']} does not fail closed" for p in policies if p["spec"].get("failurePolicy") != "Fail"]
    if len(policies) != 2:
        bad.append(f"expected the 2 wgmesh policies, found {[p['metadata']['name'] for p in policies]}")
    bad += key_texts(policies)
    passed = 0
    for what, req, old, new, expected in cases():
        try:
            messages = [m for p in policies for m in evaluate(p, req, old, new)]
        except Exception as e:  # noqa: BLE001: an error is a refusal the table did not expect
            bad.append(f"{what}: evaluation failed: {type(e).__name__}: {e}")
            continue
        verdict = "refused: " + " | ".join(messages) if messages else "allowed"
        if expected is None:
            ok = not messages
        else:
            ok = len(messages) == len(expected) and all(any(m.startswith(e) for m in messages) for e in expected)
        if ok:
            passed += 1
            print(f"ok   {what}: {verdict}")
        else:
            bad.append(f"{what}: {verdict}; expected {'allowed' if expected is None else 'refused: ' + ' | '.join(expected)}")
    for b in bad:
        print(f"FAIL {b}")
    print(f"admission policies: {passed} passed, {len(bad)} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--replay":
        sys.exit(replay(sys.argv[2], sys.argv[3:]))
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
