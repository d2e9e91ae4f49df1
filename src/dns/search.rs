//! PURE. Which fully qualified names a lookup tries, in order, from the name, the
//! search list and `ndots` (resolv.conf(5)): a name ending in `.` is absolute; a name
//! with at least `ndots` dots is tried as given first, then with each search domain;
//! one with fewer dots gets the search domains first and is tried as given last.

/// The candidates for `name`, each ending in `.`.
pub fn candidates(name: &str, search: &[String], ndots: u8) -> Vec<String> {
    if let Some(absolute) = name.strip_suffix('.') {
        return vec![format!("{absolute}.")];
    }
    let as_given = format!("{name}.");
    let searched = search.iter().filter(|d| !d.is_empty()).map(|d| format!("{name}.{d}."));
    let dots = name.bytes().filter(|&b| b == b'.').count();
    if dots >= usize::from(ndots) {
        std::iter::once(as_given).chain(searched).collect()
    } else {
        searched.chain(std::iter::once(as_given)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_candidates_by_ndots() {
        let k8s: Vec<String> =
            ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"].map(String::from).to_vec();
        for (name, search, ndots, want) in [
            ("app.test.", &k8s[..], 5, &["app.test."][..]), // absolute: no search
            (
                "app",
                &k8s[..],
                5,
                &["app.default.svc.cluster.local.", "app.svc.cluster.local.", "app.cluster.local.", "app."][..],
            ),
            // Kubernetes' ndots:5: even a long service name goes through the search list first.
            ("app.default.svc", &k8s[..1], 5, &["app.default.svc.default.svc.cluster.local.", "app.default.svc."][..]),
            (
                "app.default.svc.cluster.local",
                &k8s[..1],
                4,
                &["app.default.svc.cluster.local.", "app.default.svc.cluster.local.default.svc.cluster.local."][..],
            ),
            ("app.test", &[][..], 1, &["app.test."][..]),
            ("app", &[][..], 1, &["app."][..]),
            ("app", &[][..], 0, &["app."][..]),
            ("a.b", &["x".to_string()][..], 0, &["a.b.", "a.b.x."][..]),
        ] {
            assert_eq!(candidates(name, search, ndots), want, "{name} ndots {ndots}");
        }
    }
}
