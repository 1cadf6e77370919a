//! The distributions kmodfarm crawls, with the names kernel-crawler and the seed's matrix give them.

use kmf_types::normalize_distro;

/// A distribution family: how its repositories are laid out and how its kernels are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Debian,
    Ubuntu,
    Fedora,
    AlmaLinux,
    RockyLinux,
    CentOS,
    AmazonLinux2,
    AmazonLinux2023,
}

/// How a family's repositories are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoFormat {
    /// `dists/<suite>/Release`, `<component>/binary-<arch>/Packages.{xz,gz}`.
    Apt,
    /// `repodata/repomd.xml` → primary metadata (yum, dnf).
    RpmMd,
}

impl Family {
    pub const ALL: [Family; 8] = [
        Family::Debian,
        Family::Ubuntu,
        Family::Fedora,
        Family::AlmaLinux,
        Family::RockyLinux,
        Family::CentOS,
        Family::AmazonLinux2,
        Family::AmazonLinux2023,
    ];

    /// Accepts kernel-crawler keys, matrix names and common spellings (`AmazonLinux2023`,
    /// `amazonlinux2023`, `al2023`, `rocky`).
    pub fn parse(name: &str) -> Option<Family> {
        let n = normalize_distro(name);
        Family::ALL
            .into_iter()
            .find(|f| f.distribution() == n)
            .or(match n.as_str() {
                "al2" | "amzn2" => Some(Family::AmazonLinux2),
                "al2023" | "amzn2023" => Some(Family::AmazonLinux2023),
                "rocky" => Some(Family::RockyLinux),
                "alma" => Some(Family::AlmaLinux),
                _ => None,
            })
    }

    /// kernel-crawler's key for the family's list (`AmazonLinux2023`).
    pub fn key(self) -> &'static str {
        match self {
            Family::Debian => "Debian",
            Family::Ubuntu => "Ubuntu",
            Family::Fedora => "Fedora",
            Family::AlmaLinux => "AlmaLinux",
            Family::RockyLinux => "RockyLinux",
            Family::CentOS => "CentOS",
            Family::AmazonLinux2 => "AmazonLinux2",
            Family::AmazonLinux2023 => "AmazonLinux2023",
        }
    }

    /// The matrix `distribution` and store path component (`amazonlinux2023`).
    pub fn distribution(self) -> String {
        normalize_distro(self.key())
    }

    /// kernel-crawler's (and driverkit's) target for the family's RPM kernels. Ubuntu's targets depend
    /// on the kernel's source package (`ubuntu-aws`), see the Ubuntu crawler.
    pub fn target(self) -> &'static str {
        match self {
            Family::Debian => "debian",
            Family::Ubuntu => "ubuntu-generic",
            Family::Fedora => "fedora",
            Family::AlmaLinux => "almalinux",
            Family::RockyLinux => "rocky",
            Family::CentOS => "centos",
            Family::AmazonLinux2 => "amazonlinux2",
            Family::AmazonLinux2023 => "amazonlinux2023",
        }
    }

    pub fn repo_format(self) -> RepoFormat {
        match self {
            Family::Debian | Family::Ubuntu => RepoFormat::Apt,
            _ => RepoFormat::RpmMd,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.distribution())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in Family::ALL {
            assert_eq!(Family::parse(f.key()), Some(f));
            assert_eq!(Family::parse(&f.distribution()), Some(f));
        }
        assert_eq!(Family::parse("al2023"), Some(Family::AmazonLinux2023));
        assert_eq!(Family::parse("Amazon-Linux-2"), Some(Family::AmazonLinux2));
        assert_eq!(Family::AmazonLinux2023.distribution(), "amazonlinux2023");
        assert_eq!(Family::parse("gentoo"), None);
    }
}
