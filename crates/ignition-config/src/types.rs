//! The typed model of the latest spec (3.7.0-experimental), a superset of every
//! 3.x version. Field order is Go's struct order (upstream's generated `schema.go`:
//! embedded `Node` fields first, the rest alphabetical), so serializing with
//! serde_json gives the same key order as Go's `json.Marshal`.
//!
//! `Option<T>` is used exactly where Go has a pointer; non-pointer Go fields are
//! plain values (merging and validation depend on the difference). Serialization
//! follows Go's `omitempty` as implemented by clarketm/json (which Ignition and
//! Butane use): `None`, empty lists, empty strings, zero numbers and structs whose
//! fields are all empty are left out when the tag says `omitempty`.
//!
//! Deserializing with serde is strict and case-sensitive; use [`crate::parse`] for
//! Ignition's (Go `encoding/json`) decoding rules.

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::schema::{Field, StructSchema, Ty};
use crate::SpecVersion;

/// Go's "empty value" test used by `omitempty`.
pub trait Omit {
    /// Whether `omitempty` would leave this value out.
    fn omit(&self) -> bool;
}

impl<T> Omit for Option<T> {
    fn omit(&self) -> bool {
        self.is_none()
    }
}
impl<T> Omit for Vec<T> {
    fn omit(&self) -> bool {
        self.is_empty()
    }
}
impl Omit for String {
    fn omit(&self) -> bool {
        self.is_empty()
    }
}
impl Omit for i64 {
    fn omit(&self) -> bool {
        *self == 0
    }
}
impl Omit for bool {
    fn omit(&self) -> bool {
        !*self
    }
}

macro_rules! model {
    ($(
        $(#[$smeta:meta])*
        struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $field:ident : $rty:ty = $json:literal, $ty:expr, ptr $ptr:literal, omit $omit:literal, $since:ident;
            )*
        }
    )*) => {
        $(
            $(#[$smeta])*
            #[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
            #[serde(default)]
            pub struct $name {
                $(
                    $(#[$fmeta])*
                    #[doc = concat!("\n\nJSON `", $json, "`, since ", stringify!($since), ".")]
                    #[serde(rename = $json)]
                    pub $field: $rty,
                )*
            }

            impl Omit for $name {
                fn omit(&self) -> bool {
                    true $( && Omit::omit(&self.$field) )*
                }
            }

            impl Serialize for $name {
                fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                    let mut map = serializer.serialize_map(None)?;
                    $(
                        if !($omit && Omit::omit(&self.$field)) {
                            map.serialize_entry($json, &self.$field)?;
                        }
                    )*
                    map.end()
                }
            }
        )*

        /// The generated schema table (alphabetical by Go name).
        pub(crate) static STRUCTS: &[StructSchema] = &[
            $(
                StructSchema {
                    name: stringify!($name),
                    fields: &[
                        $(
                            Field {
                                rust: stringify!($field),
                                json: $json,
                                ty: $ty,
                                pointer: $ptr,
                                omitempty: $omit,
                                since: SpecVersion::$since,
                                until: None,
                            },
                        )*
                    ],
                },
            )*
        ];
    };
}

const S: Ty = Ty::String;
const I: Ty = Ty::Int;
const B: Ty = Ty::Bool;
const fn st(n: &'static str) -> Ty {
    Ty::Struct(n)
}

model! {
    /// IBM Crypto Express (CEX) LUKS setup.
    struct Cex {
        enabled: Option<bool> = "enabled", B, ptr true, omit true, V3_5_0;
    }

    /// Clevis-based LUKS key binding.
    struct Clevis {
        custom: ClevisCustom = "custom", st("ClevisCustom"), ptr false, omit true, V3_3_0;
        tang: Vec<Tang> = "tang", Ty::List(&st("Tang")), ptr false, omit true, V3_2_0;
        threshold: Option<i64> = "threshold", I, ptr true, omit true, V3_2_0;
        tpm2: Option<bool> = "tpm2", B, ptr true, omit true, V3_2_0;
    }

    /// A custom Clevis pin.
    struct ClevisCustom {
        config: Option<String> = "config", S, ptr true, omit true, V3_3_0;
        needs_network: Option<bool> = "needsNetwork", B, ptr true, omit true, V3_3_0;
        pin: Option<String> = "pin", S, ptr true, omit true, V3_3_0;
    }

    /// A whole Ignition config.
    struct Config {
        ignition: Ignition = "ignition", st("Ignition"), ptr false, omit false, V3_0_0;
        kernel_arguments: KernelArguments = "kernelArguments", st("KernelArguments"), ptr false, omit true, V3_3_0;
        passwd: Passwd = "passwd", st("Passwd"), ptr false, omit true, V3_0_0;
        storage: Storage = "storage", st("Storage"), ptr false, omit true, V3_0_0;
        systemd: Systemd = "systemd", st("Systemd"), ptr false, omit true, V3_0_0;
    }

    /// A directory to create.
    struct Directory {
        group: NodeGroup = "group", st("NodeGroup"), ptr false, omit true, V3_0_0;
        overwrite: Option<bool> = "overwrite", B, ptr true, omit true, V3_0_0;
        path: String = "path", S, ptr false, omit false, V3_0_0;
        user: NodeUser = "user", st("NodeUser"), ptr false, omit true, V3_0_0;
        mode: Option<i64> = "mode", I, ptr true, omit true, V3_0_0;
    }

    /// A disk to partition.
    struct Disk {
        device: String = "device", S, ptr false, omit false, V3_0_0;
        partitions: Vec<Partition> = "partitions", Ty::List(&st("Partition")), ptr false, omit true, V3_0_0;
        wipe_table: Option<bool> = "wipeTable", B, ptr true, omit true, V3_0_0;
    }

    /// A systemd drop-in.
    struct Dropin {
        contents: Option<String> = "contents", S, ptr true, omit true, V3_0_0;
        name: String = "name", S, ptr false, omit false, V3_0_0;
    }

    /// A regular file to write.
    struct File {
        group: NodeGroup = "group", st("NodeGroup"), ptr false, omit true, V3_0_0;
        overwrite: Option<bool> = "overwrite", B, ptr true, omit true, V3_0_0;
        path: String = "path", S, ptr false, omit false, V3_0_0;
        user: NodeUser = "user", st("NodeUser"), ptr false, omit true, V3_0_0;
        append: Vec<Resource> = "append", Ty::List(&st("Resource")), ptr false, omit true, V3_1_0;
        contents: Resource = "contents", st("Resource"), ptr false, omit true, V3_1_0;
        mode: Option<i64> = "mode", I, ptr true, omit true, V3_0_0;
    }

    /// A filesystem to create and/or mount.
    struct Filesystem {
        device: String = "device", S, ptr false, omit false, V3_0_0;
        format: Option<String> = "format", S, ptr true, omit true, V3_0_0;
        label: Option<String> = "label", S, ptr true, omit true, V3_0_0;
        mount_options: Vec<String> = "mountOptions", Ty::List(&Ty::NamedString("MountOption")), ptr false, omit true, V3_1_0;
        options: Vec<String> = "options", Ty::List(&Ty::NamedString("FilesystemOption")), ptr false, omit true, V3_0_0;
        path: Option<String> = "path", S, ptr true, omit true, V3_0_0;
        uuid: Option<String> = "uuid", S, ptr true, omit true, V3_0_0;
        wipe_filesystem: Option<bool> = "wipeFilesystem", B, ptr true, omit true, V3_0_0;
    }

    /// An HTTP header sent when fetching a resource.
    struct HTTPHeader {
        name: String = "name", S, ptr false, omit false, V3_1_0;
        value: Option<String> = "value", S, ptr true, omit true, V3_1_0;
    }

    /// Ignition's own settings.
    struct Ignition {
        config: IgnitionConfig = "config", st("IgnitionConfig"), ptr false, omit true, V3_0_0;
        proxy: Proxy = "proxy", st("Proxy"), ptr false, omit true, V3_1_0;
        security: Security = "security", st("Security"), ptr false, omit true, V3_0_0;
        timeouts: Timeouts = "timeouts", st("Timeouts"), ptr false, omit true, V3_0_0;
        /// (Before 3.4.0 the Go tag had `omitempty`; see [`crate::schema::LEGACY_FIELDS`].)
        version: String = "version", S, ptr false, omit false, V3_4_0;
    }

    /// Configs to merge or to replace this one with.
    struct IgnitionConfig {
        merge: Vec<Resource> = "merge", Ty::List(&st("Resource")), ptr false, omit true, V3_1_0;
        replace: Resource = "replace", st("Resource"), ptr false, omit true, V3_1_0;
    }

    /// Kernel arguments to ensure present or absent.
    struct KernelArguments {
        should_exist: Vec<String> = "shouldExist", Ty::List(&Ty::NamedString("KernelArgument")), ptr false, omit true, V3_3_0;
        should_not_exist: Vec<String> = "shouldNotExist", Ty::List(&Ty::NamedString("KernelArgument")), ptr false, omit true, V3_3_0;
    }

    /// A symbolic or hard link.
    struct Link {
        group: NodeGroup = "group", st("NodeGroup"), ptr false, omit true, V3_0_0;
        overwrite: Option<bool> = "overwrite", B, ptr true, omit true, V3_0_0;
        path: String = "path", S, ptr false, omit false, V3_0_0;
        user: NodeUser = "user", st("NodeUser"), ptr false, omit true, V3_0_0;
        hard: Option<bool> = "hard", B, ptr true, omit true, V3_0_0;
        target: Option<String> = "target", S, ptr true, omit true, V3_3_0;
    }

    /// A LUKS volume.
    struct Luks {
        cex: Cex = "cex", st("Cex"), ptr false, omit true, V3_5_0;
        clevis: Clevis = "clevis", st("Clevis"), ptr false, omit true, V3_3_0;
        device: Option<String> = "device", S, ptr true, omit true, V3_2_0;
        discard: Option<bool> = "discard", B, ptr true, omit true, V3_4_0;
        key_file: Resource = "keyFile", st("Resource"), ptr false, omit true, V3_2_0;
        label: Option<String> = "label", S, ptr true, omit true, V3_2_0;
        name: String = "name", S, ptr false, omit false, V3_2_0;
        open_options: Vec<String> = "openOptions", Ty::List(&Ty::NamedString("OpenOption")), ptr false, omit true, V3_4_0;
        options: Vec<String> = "options", Ty::List(&Ty::NamedString("LuksOption")), ptr false, omit true, V3_2_0;
        uuid: Option<String> = "uuid", S, ptr true, omit true, V3_2_0;
        wipe_volume: Option<bool> = "wipeVolume", B, ptr true, omit true, V3_2_0;
    }

    /// Owner group of a file, directory or link.
    struct NodeGroup {
        id: Option<i64> = "id", I, ptr true, omit true, V3_0_0;
        name: Option<String> = "name", S, ptr true, omit true, V3_0_0;
    }

    /// Owner user of a file, directory or link.
    struct NodeUser {
        id: Option<i64> = "id", I, ptr true, omit true, V3_0_0;
        name: Option<String> = "name", S, ptr true, omit true, V3_0_0;
    }

    /// A GPT partition.
    struct Partition {
        guid: Option<String> = "guid", S, ptr true, omit true, V3_0_0;
        label: Option<String> = "label", S, ptr true, omit true, V3_0_0;
        number: i64 = "number", I, ptr false, omit true, V3_0_0;
        resize: Option<bool> = "resize", B, ptr true, omit true, V3_2_0;
        should_exist: Option<bool> = "shouldExist", B, ptr true, omit true, V3_0_0;
        size_mib: Option<i64> = "sizeMiB", I, ptr true, omit true, V3_0_0;
        start_mib: Option<i64> = "startMiB", I, ptr true, omit true, V3_0_0;
        type_guid: Option<String> = "typeGuid", S, ptr true, omit true, V3_0_0;
        wipe_partition_entry: Option<bool> = "wipePartitionEntry", B, ptr true, omit true, V3_0_0;
    }

    /// Users and groups.
    struct Passwd {
        groups: Vec<PasswdGroup> = "groups", Ty::List(&st("PasswdGroup")), ptr false, omit true, V3_0_0;
        users: Vec<PasswdUser> = "users", Ty::List(&st("PasswdUser")), ptr false, omit true, V3_0_0;
    }

    /// A group.
    struct PasswdGroup {
        gid: Option<i64> = "gid", I, ptr true, omit true, V3_0_0;
        name: String = "name", S, ptr false, omit false, V3_0_0;
        password_hash: Option<String> = "passwordHash", S, ptr true, omit true, V3_0_0;
        should_exist: Option<bool> = "shouldExist", B, ptr true, omit true, V3_2_0;
        system: Option<bool> = "system", B, ptr true, omit true, V3_0_0;
    }

    /// A user.
    struct PasswdUser {
        gecos: Option<String> = "gecos", S, ptr true, omit true, V3_0_0;
        groups: Vec<String> = "groups", Ty::List(&Ty::NamedString("Group")), ptr false, omit true, V3_0_0;
        home_dir: Option<String> = "homeDir", S, ptr true, omit true, V3_0_0;
        name: String = "name", S, ptr false, omit false, V3_0_0;
        no_create_home: Option<bool> = "noCreateHome", B, ptr true, omit true, V3_0_0;
        no_log_init: Option<bool> = "noLogInit", B, ptr true, omit true, V3_0_0;
        no_user_group: Option<bool> = "noUserGroup", B, ptr true, omit true, V3_0_0;
        password_hash: Option<String> = "passwordHash", S, ptr true, omit true, V3_0_0;
        primary_group: Option<String> = "primaryGroup", S, ptr true, omit true, V3_0_0;
        ssh_authorized_keys: Vec<String> = "sshAuthorizedKeys", Ty::List(&Ty::NamedString("SSHAuthorizedKey")), ptr false, omit true, V3_0_0;
        shell: Option<String> = "shell", S, ptr true, omit true, V3_0_0;
        should_exist: Option<bool> = "shouldExist", B, ptr true, omit true, V3_2_0;
        system: Option<bool> = "system", B, ptr true, omit true, V3_0_0;
        uid: Option<i64> = "uid", I, ptr true, omit true, V3_0_0;
    }

    /// HTTP(S) proxy settings for Ignition's fetches.
    struct Proxy {
        http_proxy: Option<String> = "httpProxy", S, ptr true, omit true, V3_1_0;
        https_proxy: Option<String> = "httpsProxy", S, ptr true, omit true, V3_1_0;
        no_proxy: Vec<String> = "noProxy", Ty::List(&Ty::NamedString("NoProxyItem")), ptr false, omit true, V3_1_0;
    }

    /// A software RAID array.
    struct Raid {
        /// (Before 3.3.0 the Go tag lacked `omitempty`; see [`crate::schema::LEGACY_FIELDS`].)
        devices: Vec<String> = "devices", Ty::List(&Ty::NamedString("Device")), ptr false, omit true, V3_3_0;
        level: Option<String> = "level", S, ptr true, omit true, V3_3_0;
        name: String = "name", S, ptr false, omit false, V3_0_0;
        options: Vec<String> = "options", Ty::List(&Ty::NamedString("RaidOption")), ptr false, omit true, V3_0_0;
        spares: Option<i64> = "spares", I, ptr true, omit true, V3_0_0;
    }

    /// A remote or inline resource (contents, config, CA bundle, key file).
    struct Resource {
        compression: Option<String> = "compression", S, ptr true, omit true, V3_1_0;
        http_headers: Vec<HTTPHeader> = "httpHeaders", Ty::NamedList("HTTPHeaders", &st("HTTPHeader")), ptr false, omit true, V3_1_0;
        source: Option<String> = "source", S, ptr true, omit true, V3_1_0;
        verification: Verification = "verification", st("Verification"), ptr false, omit true, V3_1_0;
    }

    /// Security settings.
    struct Security {
        tls: TLS = "tls", st("TLS"), ptr false, omit true, V3_0_0;
    }

    /// Storage: disks, arrays, filesystems and nodes.
    struct Storage {
        directories: Vec<Directory> = "directories", Ty::List(&st("Directory")), ptr false, omit true, V3_0_0;
        disks: Vec<Disk> = "disks", Ty::List(&st("Disk")), ptr false, omit true, V3_0_0;
        files: Vec<File> = "files", Ty::List(&st("File")), ptr false, omit true, V3_0_0;
        filesystems: Vec<Filesystem> = "filesystems", Ty::List(&st("Filesystem")), ptr false, omit true, V3_0_0;
        links: Vec<Link> = "links", Ty::List(&st("Link")), ptr false, omit true, V3_0_0;
        luks: Vec<Luks> = "luks", Ty::List(&st("Luks")), ptr false, omit true, V3_2_0;
        raid: Vec<Raid> = "raid", Ty::List(&st("Raid")), ptr false, omit true, V3_0_0;
    }

    /// systemd units.
    struct Systemd {
        units: Vec<Unit> = "units", Ty::List(&st("Unit")), ptr false, omit true, V3_0_0;
    }

    /// TLS settings.
    struct TLS {
        certificate_authorities: Vec<Resource> = "certificateAuthorities", Ty::List(&st("Resource")), ptr false, omit true, V3_1_0;
    }

    /// A Tang server for Clevis.
    struct Tang {
        advertisement: Option<String> = "advertisement", S, ptr true, omit true, V3_4_0;
        thumbprint: Option<String> = "thumbprint", S, ptr true, omit true, V3_2_0;
        url: String = "url", S, ptr false, omit true, V3_2_0;
    }

    /// HTTP timeouts in seconds.
    struct Timeouts {
        http_response_headers: Option<i64> = "httpResponseHeaders", I, ptr true, omit true, V3_0_0;
        http_total: Option<i64> = "httpTotal", I, ptr true, omit true, V3_0_0;
    }

    /// A systemd unit.
    struct Unit {
        contents: Option<String> = "contents", S, ptr true, omit true, V3_0_0;
        dropins: Vec<Dropin> = "dropins", Ty::List(&st("Dropin")), ptr false, omit true, V3_0_0;
        enabled: Option<bool> = "enabled", B, ptr true, omit true, V3_0_0;
        mask: Option<bool> = "mask", B, ptr true, omit true, V3_0_0;
        name: String = "name", S, ptr false, omit false, V3_0_0;
    }

    /// Hash verification of a resource.
    struct Verification {
        hash: Option<String> = "hash", S, ptr true, omit true, V3_0_0;
    }
}

impl Config {
    /// An empty config of the given version (what Ignition merges everything onto).
    pub fn with_version(v: SpecVersion) -> Config {
        let mut c = Config::default();
        c.ignition.version = v.to_string();
        c
    }
}

impl Resource {
    /// Upstream `Key()`: the source, or "" when unset.
    pub fn key(&self) -> &str {
        self.source.as_deref().unwrap_or("")
    }
}

impl Partition {
    /// Upstream `Key()`: `number:N`, else `label:L`, else "".
    pub fn key(&self) -> String {
        if self.number != 0 {
            format!("number:{}", self.number)
        } else if let Some(l) = &self.label {
            format!("label:{l}")
        } else {
            String::new()
        }
    }
}
