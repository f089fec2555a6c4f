#!/bin/bash
# The stand-in clickhouse image's entrypoint (deploy/test/clickhouse.Dockerfile): the official image's contract.
set -euo pipefail
: "${CLICKHOUSE_USER:?the user to create}"
: "${CLICKHOUSE_PASSWORD:?its password}"
home=/var/lib/clickhouse
mkdir -p "$home/data" "$home/tmp" "$home/log" "$home/user_files" "$home/format_schemas"
chown -R clickhouse:clickhouse "$home"
sha=$(printf '%s' "$CLICKHOUSE_PASSWORD" | sha256sum | cut -d' ' -f1)
cat >/etc/clickhouse-server/config.xml <<XML
<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><console>1</console></logger>
    <listen_host>0.0.0.0</listen_host>
    <http_port>8123</http_port>
    <tcp_port>9000</tcp_port>
    <max_connections>1024</max_connections>
    <keep_alive_timeout>30</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <mark_cache_size>268435456</mark_cache_size>
    <path>$home/data/</path>
    <tmp_path>$home/tmp/</tmp_path>
    <user_files_path>$home/user_files/</user_files_path>
    <format_schema_path>$home/format_schemas/</format_schema_path>
    <users_config>/etc/clickhouse-server/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
</yandex>
XML
cat >/etc/clickhouse-server/users.xml <<XML
<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
    <users>
        <${CLICKHOUSE_USER}>
            <password_sha256_hex>$sha</password_sha256_hex>
            <networks><ip>::/0</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </${CLICKHOUSE_USER}>
    </users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
        <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
XML
rm -rf /etc/clickhouse-server/config.d /etc/clickhouse-server/users.d
exec setpriv --reuid=clickhouse --regid=clickhouse --init-groups -- \
    clickhouse-server --config-file=/etc/clickhouse-server/config.xml
