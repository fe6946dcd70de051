//! The embedded list of hosting, cloud and VPN-heavy networks behind the
//! `hosting_asn` reason. Traffic from a data centre is not bad in itself
//! (APIs, monitors, corporate proxies), so the reason carries moderate
//! weight; operators extend the list with the `HOSTING_ASNS` variable.
//! Sorted by ASN so lookup is a binary search.

/// (ASN, operator) pairs. Kept sorted; a test checks it.
pub const HOSTING_ASNS: &[(u32, &str)] = &[
    (6939, "Hurricane Electric"),
    (7506, "GMO Internet"),
    (8075, "Microsoft Azure"),
    (8100, "QuadraNet"),
    (8560, "IONOS"),
    (8987, "Amazon AWS (EU)"),
    (9009, "M247 (VPN-heavy)"),
    (12876, "Scaleway"),
    (13335, "Cloudflare (WARP, Workers)"),
    (14061, "DigitalOcean"),
    (14618, "Amazon AWS"),
    (15169, "Google"),
    (16265, "Leaseweb"),
    (16276, "OVHcloud"),
    (16509, "Amazon AWS"),
    (19318, "Interserver"),
    (20473, "Vultr (Choopa)"),
    (21859, "Zenlayer"),
    (24940, "Hetzner"),
    (26496, "GoDaddy"),
    (28753, "Leaseweb DE"),
    (29802, "HVC / Hivelocity"),
    (31898, "Oracle Cloud"),
    (32613, "iWeb / Leaseweb CA"),
    (34549, "meerfarbig"),
    (35916, "MultaCom"),
    (36007, "Kamatera"),
    (36352, "ColoCrossing"),
    (37963, "Alibaba Cloud"),
    (39351, "31173 Services (Mullvad VPN)"),
    (40676, "Psychz Networks"),
    (43350, "NForce Entertainment"),
    (45090, "Tencent Cloud"),
    (45102, "Alibaba Cloud"),
    (46606, "Unified Layer"),
    (47583, "Hostinger"),
    (49453, "Global Layer"),
    (51167, "Contabo"),
    (53667, "FranTech / BuyVM"),
    (54113, "Fastly"),
    (54290, "Hostwinds"),
    (54825, "Equinix Metal"),
    (55286, "Server Mania"),
    (60068, "Datacamp / CDN77 (VPN-heavy)"),
    (60781, "Leaseweb NL"),
    (62240, "Clouvider"),
    (62371, "Proton AG"),
    (63949, "Akamai Connected Cloud (Linode)"),
    (132203, "Tencent Cloud"),
    (135377, "UCloud HK"),
    (136907, "Huawei Cloud"),
    (141995, "Contabo Asia"),
    (197540, "netcup"),
    (200651, "Flokinet"),
    (202425, "IP Volume"),
    (204957, "GreenFloid"),
    (206092, "IPXO"),
    (207137, "PacketHub (VPN-heavy)"),
    (209103, "Proton VPN"),
    (209242, "Cloudflare London"),
    (212238, "Datacamp"),
    (213230, "Hetzner Cloud"),
    (396982, "Google Cloud"),
];

/// The operator name when `asn` is on the embedded list.
pub fn embedded_hosting(asn: u32) -> Option<&'static str> {
    HOSTING_ASNS.binary_search_by_key(&asn, |(a, _)| *a).ok().and_then(|i| HOSTING_ASNS.get(i)).map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_is_sorted_and_unique() {
        assert!(HOSTING_ASNS.windows(2).all(|w| matches!(w, [a, b] if a.0 < b.0)));
    }

    #[test]
    fn lookups() {
        assert_eq!(embedded_hosting(14061), Some("DigitalOcean"));
        assert_eq!(embedded_hosting(16509), Some("Amazon AWS"));
        assert_eq!(embedded_hosting(396982), Some("Google Cloud"));
        assert_eq!(embedded_hosting(3320), None); // Deutsche Telekom: residential
        assert_eq!(embedded_hosting(0), None);
    }
}
