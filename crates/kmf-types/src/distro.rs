/// Normalises a distribution name to the spelling of matrix entries and store paths: lower case, ASCII
/// letters and digits only (`AmazonLinux2023` → `amazonlinux2023`, `Oracle-8` → `oracle8`).
pub fn normalize_distro(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_kernel_crawler_keys() {
        assert_eq!(normalize_distro("AmazonLinux2023"), "amazonlinux2023");
        assert_eq!(normalize_distro("Debian"), "debian");
        assert_eq!(normalize_distro("Oracle-8"), "oracle8");
    }
}
