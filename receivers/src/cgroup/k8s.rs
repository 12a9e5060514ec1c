//! What a cgroup path reveals about Kubernetes: pod UID, QoS class, container id and
//! runtime, for both kubelet cgroup drivers.
//!
//! - cgroupfs: `/kubepods/burstable/pod<uid>/<64-hex>`; Guaranteed pods sit directly
//!   under `/kubepods/pod<uid>`.
//! - systemd: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with _>.slice/<runtime>-<64-hex>.scope`,
//!   where dashes inside the UID became `_` (kubelet `ConvertCgroupNameToSystemd`).
//!
//! Runtime scope prefixes: `cri-containerd-`, `crio-`, `docker-`. `crio-conmon-<id>`
//! scopes are CRI-O's monitor, not a container: they get no container attributes.
//! Pure string work on one path; it never touches the file system.

#[derive(Debug, Default, PartialEq, Eq)]
pub struct K8sAttributes {
    pub pod_uid: Option<String>,
    pub qos_class: Option<&'static str>,
    pub container_id: Option<String>,
    pub container_runtime: Option<&'static str>,
}

fn is_uid_char(b: u8) -> bool {
    b.is_ascii_hexdigit() && !b.is_ascii_uppercase() || b == b'-' || b == b'_'
}

fn is_container_id(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The pod UID in one path element (`pod<uid>` or `kubepods-<qos>-pod<uid>.slice`).
fn pod_uid(element: &str) -> Option<String> {
    let element = element.strip_suffix(".slice").unwrap_or(element);
    let at = element.rfind("pod")?;
    let uid = &element[at + 3..];
    (uid.len() == 36 && uid.bytes().all(is_uid_char)).then(|| uid.replace('_', "-"))
}

fn qos(element: &str) -> Option<&'static str> {
    let element = element.strip_suffix(".slice").unwrap_or(element);
    if element.ends_with("burstable") {
        Some("Burstable")
    } else if element.ends_with("besteffort") {
        Some("BestEffort")
    } else {
        None
    }
}

/// Container id and runtime from the element below the pod.
fn container(element: &str) -> Option<(String, Option<&'static str>)> {
    if is_container_id(element) {
        return Some((element.to_string(), None));
    }
    let scope = element.strip_suffix(".scope")?;
    if scope.starts_with("crio-conmon-") {
        return None;
    }
    for (prefix, runtime) in [
        ("cri-containerd-", "containerd"),
        ("crio-", "cri-o"),
        ("docker-", "docker"),
    ] {
        if let Some(id) = scope.strip_prefix(prefix) {
            if is_container_id(id) {
                return Some((id.to_string(), Some(runtime)));
            }
        }
    }
    None
}

/// Parses a cgroup path (relative to the hierarchy root, with or without a leading `/`).
pub fn parse(path: &str) -> K8sAttributes {
    let mut attributes = K8sAttributes::default();
    let mut elements = path.split('/').filter(|e| !e.is_empty());
    let Some(kubepods_at) = path
        .split('/')
        .filter(|e| !e.is_empty())
        .position(|e| e == "kubepods" || e == "kubepods.slice")
    else {
        return attributes;
    };
    let mut elements_after = elements.by_ref().skip(kubepods_at + 1);
    let mut qos_class = None;
    while let Some(element) = elements_after.next() {
        if let Some(uid) = pod_uid(element) {
            attributes.pod_uid = Some(uid);
            attributes.qos_class = Some(qos_class.unwrap_or("Guaranteed"));
            if let Some(next) = elements_after.next() {
                if let Some((id, runtime)) = container(next) {
                    attributes.container_id = Some(id);
                    attributes.container_runtime = runtime;
                }
            }
            break;
        }
        qos_class = qos(element).or(qos_class);
    }
    attributes
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4c0e1b5d7f2a9e3c6b8d0a1f2e3d4c5b6a7980e1d2c3b4a5968778695a4b3c2d";

    #[test]
    fn systemd_driver_burstable_containerd() {
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b7c3c2e_6f1a_4d2b_9c8e_1a2b3c4d5e6f.slice/cri-containerd-{ID}.scope"
        );
        let a = parse(&path);
        assert_eq!(
            a.pod_uid.as_deref(),
            Some("0b7c3c2e-6f1a-4d2b-9c8e-1a2b3c4d5e6f")
        );
        assert_eq!(a.qos_class, Some("Burstable"));
        assert_eq!(a.container_id.as_deref(), Some(ID));
        assert_eq!(a.container_runtime, Some("containerd"));
    }

    #[test]
    fn systemd_driver_guaranteed_pod_level_and_conmon() {
        let a = parse("kubepods.slice/kubepods-pod11111111_2222_3333_4444_555555555555.slice");
        assert_eq!(
            a.pod_uid.as_deref(),
            Some("11111111-2222-3333-4444-555555555555")
        );
        assert_eq!(a.qos_class, Some("Guaranteed"));
        assert_eq!(a.container_id, None);
        let a = parse(&format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod11111111_2222_3333_4444_555555555555.slice/crio-conmon-{ID}.scope"
        ));
        assert_eq!(a.qos_class, Some("BestEffort"));
        assert_eq!(a.container_id, None);
        let a = parse(&format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod11111111_2222_3333_4444_555555555555.slice/crio-{ID}.scope"
        ));
        assert_eq!(a.container_runtime, Some("cri-o"));
        let a = parse(&format!(
            "/kubepods.slice/kubepods-pod11111111_2222_3333_4444_555555555555.slice/docker-{ID}.scope"
        ));
        assert_eq!(a.container_runtime, Some("docker"));
    }

    #[test]
    fn cgroupfs_driver() {
        let a = parse(&format!(
            "/kubepods/besteffort/pod9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d/{ID}"
        ));
        assert_eq!(
            a.pod_uid.as_deref(),
            Some("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d")
        );
        assert_eq!(a.qos_class, Some("BestEffort"));
        assert_eq!(a.container_id.as_deref(), Some(ID));
        assert_eq!(a.container_runtime, None);
        let a = parse("/kubepods/pod9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d");
        assert_eq!(a.qos_class, Some("Guaranteed"));
    }

    #[test]
    fn not_kubernetes() {
        assert_eq!(
            parse("/system.slice/docker.service"),
            K8sAttributes::default()
        );
        assert_eq!(parse("/kubepods/burstable"), K8sAttributes::default());
        assert_eq!(parse("/"), K8sAttributes::default());
        assert_eq!(parse("/user.slice/pod-something"), K8sAttributes::default());
    }
}
