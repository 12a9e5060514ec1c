//! The pod and container of a process, from its `/proc/PID/cgroup`, so that
//! `k8sattributes` can enrich smaps data by `k8s.pod.uid` / `container.id` as it does the
//! cgroup receiver's. The path itself is read by the cgroup receiver's parser
//! ([`crate::cgroup::k8s::parse`]); this module only picks the line.
//!
//! `/proc/PID/cgroup` has one line per hierarchy, `<id>:<controllers>:<path>`:
//! cgroup v2 a single `0::<path>`, cgroup v1 one line per controller (plus
//! `name=systemd`), hybrid both. The line whose kubepods path names a container wins,
//! else the first that names a pod.
//!
//! The path is relative to the *reader's* cgroup namespace. containerd and CRI-O give an
//! unprivileged container on cgroup v2 a private one, so a node agent in a pod sees another
//! pod's process as `/../../kubepods-besteffort-pod<uid>.slice/cri-containerd-<id>.scope`
//! (systemd driver) or `/../../besteffort/pod<uid>/<id>` (cgroupfs): the elements up to the
//! common ancestor are `..`. Such a path counts as a kubepods path when what is left starts
//! where a kubepods path continues (a `kubepods-*` slice, a QoS class or a pod element);
//! only its pod UID and container id are used (the QoS class may be hidden above it).

use crate::cgroup::k8s::{self, K8sAttributes};

/// The pod UID and container id of the first kubepods path among the lines of a
/// `/proc/PID/cgroup` file, preferring one that names a container. Nothing for a
/// process outside Kubernetes.
pub(crate) fn from_proc_cgroup(text: &str) -> K8sAttributes {
    let mut pod_only = K8sAttributes::default();
    for path in text.lines().filter_map(|line| line.splitn(3, ':').nth(2)) {
        let found = parse_path(path);
        if found.container_id.is_some() {
            return found;
        }
        if pod_only.pod_uid.is_none() && found.pod_uid.is_some() {
            pod_only = found;
        }
    }
    pod_only
}

/// One path, absolute or relative to the reader's cgroup namespace (leading `..`s).
fn parse_path(path: &str) -> K8sAttributes {
    let found = k8s::parse(path);
    if found.pod_uid.is_some() {
        return found;
    }
    let mut below = path.trim_start_matches('/');
    let mut climbed = false;
    while let Some(rest) = below.strip_prefix("..") {
        if !(rest.is_empty() || rest.starts_with('/')) {
            break;
        }
        below = rest.trim_start_matches('/');
        climbed = true;
    }
    if !climbed {
        return K8sAttributes::default();
    }
    let first = below.split('/').next().unwrap_or_default();
    let root = if first.starts_with("kubepods-") {
        "kubepods.slice"
    } else if matches!(first, "burstable" | "besteffort") || first.starts_with("pod") {
        "kubepods"
    } else {
        return K8sAttributes::default();
    };
    let found = k8s::parse(&format!("/{root}/{below}"));
    K8sAttributes {
        pod_uid: found.pod_uid,
        qos_class: None,
        container_id: found.container_id,
        container_runtime: found.container_runtime,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "5f0b5c4e-2b8d-4a4e-9f3a-1c2d3e4f5a6b";
    const SYSTEMD_UID: &str = "5f0b5c4e_2b8d_4a4e_9f3a_1c2d3e4f5a6b";
    const ID: &str = "8d1f2c3b4a5968778695a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3";

    fn ids(text: &str) -> (Option<String>, Option<String>) {
        let found = from_proc_cgroup(text);
        (found.pod_uid, found.container_id)
    }

    fn expected() -> (Option<String>, Option<String>) {
        (Some(UID.to_string()), Some(ID.to_string()))
    }

    #[test]
    fn cgroup_v2_systemd_driver_containerd_and_cri_o() {
        let containerd = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{SYSTEMD_UID}.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(ids(&containerd), expected());
        let cri_o = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{SYSTEMD_UID}.slice/crio-{ID}.scope\n"
        );
        assert_eq!(ids(&cri_o), expected());
        // CRI-O's monitor (conmon) of the container: the pod, no container.
        let conmon = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{SYSTEMD_UID}.slice/crio-conmon-{ID}.scope\n"
        );
        assert_eq!(ids(&conmon), (Some(UID.to_string()), None));
        // A Guaranteed pod sits directly under kubepods.slice.
        let guaranteed = format!(
            "0::/kubepods.slice/kubepods-pod{SYSTEMD_UID}.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(ids(&guaranteed), expected());
    }

    #[test]
    fn cgroup_v2_cgroupfs_driver() {
        assert_eq!(
            ids(&format!("0::/kubepods/burstable/pod{UID}/{ID}\n")),
            expected()
        );
        assert_eq!(ids(&format!("0::/kubepods/pod{UID}/{ID}\n")), expected());
    }

    #[test]
    fn cgroup_v1_cgroupfs_driver_every_controller_line() {
        let path = format!("/kubepods/besteffort/pod{UID}/{ID}");
        let text = format!(
            "12:hugetlb:{path}\n11:cpuset:{path}\n10:memory:{path}\n9:devices:{path}\n8:freezer:{path}\n7:net_cls,net_prio:{path}\n6:perf_event:{path}\n5:blkio:{path}\n4:cpu,cpuacct:{path}\n3:pids:{path}\n2:rdma:/\n1:name=systemd:{path}\n0::/\n"
        );
        assert_eq!(ids(&text), expected());
    }

    #[test]
    fn cgroup_v1_systemd_driver_cri_o_and_hybrid() {
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{SYSTEMD_UID}.slice/crio-{ID}.scope"
        );
        let text = format!(
            "11:memory:{path}\n10:cpu,cpuacct:{path}\n9:pids:{path}\n2:misc:/\n1:name=systemd:{path}\n"
        );
        assert_eq!(ids(&text), expected());
        // Hybrid: the unified line first and outside kubepods; the v1 lines tell.
        let hybrid = format!("0::/system.slice/containerd.service\n5:memory:{path}\n");
        assert_eq!(ids(&hybrid), expected());
    }

    #[test]
    fn a_line_naming_the_container_wins_over_one_naming_only_the_pod() {
        let text = format!(
            "2:memory:/kubepods/burstable/pod{UID}\n1:name=systemd:/kubepods/burstable/pod{UID}/{ID}\n"
        );
        assert_eq!(ids(&text), expected());
    }

    #[test]
    fn relative_to_a_private_cgroup_namespace() {
        // The reader is a container of another pod (same QoS class, or another one).
        let systemd = format!(
            "0::/../../kubepods-besteffort-pod{SYSTEMD_UID}.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(ids(&systemd), expected());
        let other_qos = format!(
            "0::/../../../kubepods-burstable.slice/kubepods-burstable-pod{SYSTEMD_UID}.slice/crio-{ID}.scope\n"
        );
        assert_eq!(ids(&other_qos), expected());
        assert_eq!(
            ids(&format!("0::/../../besteffort/pod{UID}/{ID}\n")),
            expected()
        );
        assert_eq!(ids(&format!("0::/../../pod{UID}/{ID}\n")), expected());
        assert_eq!(
            from_proc_cgroup(&format!("0::/../../pod{UID}/{ID}\n")).qos_class,
            None
        );
        // A sibling container of the reader's own pod: no pod element is visible.
        assert_eq!(
            ids(&format!("0::/../cri-containerd-{ID}.scope\n")),
            (None, None)
        );
        // Outside Kubernetes, seen from inside a pod.
        assert_eq!(
            ids("0::/../../../../system.slice/kubelet.service\n"),
            (None, None)
        );
        assert_eq!(ids("0::/../..\n"), (None, None));
    }

    #[test]
    fn outside_kubernetes_nothing() {
        for text in [
            "0::/\n",
            "0::/system.slice/containerd.service\n",
            "0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome.scope\n",
            &format!("12:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n0::/\n"),
            &format!("0::/system.slice/docker-{ID}.scope\n"),
            "0::/machine.slice/libpod-pod-0123.slice\n",
            "",
            "garbage without colons\n",
            "0::/..foo/pod\n",
        ] {
            assert_eq!(ids(text), (None, None), "{text:?}");
        }
    }
}
