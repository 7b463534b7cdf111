# Sourced once by the influxdb:1.x image's entrypoint on an empty volume ($INFLUX_CMD runs a statement as the
# admin it created from INFLUXDB_ADMIN_USER/PASSWORD). The same databases, users and grants that
# deploy/influx_access.py gives the local stack: the writer writes both audience databases, each reader reads one.
base="${AROMATRACK_INFLUX_DB:-aromatrack}"
for audience in coaching clinical; do
  $INFLUX_CMD "CREATE DATABASE \"${base}_${audience}\""
done
$INFLUX_CMD "CREATE USER aromatrack_writer WITH PASSWORD '${AROMATRACK_INFLUX_WRITER_PASSWORD}'"
$INFLUX_CMD "CREATE USER aromatrack_coaching_reader WITH PASSWORD '${AROMATRACK_INFLUX_COACHING_READER_PASSWORD}'"
$INFLUX_CMD "CREATE USER aromatrack_clinical_reader WITH PASSWORD '${AROMATRACK_INFLUX_CLINICAL_READER_PASSWORD}'"
$INFLUX_CMD "GRANT WRITE ON \"${base}_coaching\" TO aromatrack_writer"
$INFLUX_CMD "GRANT WRITE ON \"${base}_clinical\" TO aromatrack_writer"
$INFLUX_CMD "GRANT READ ON \"${base}_coaching\" TO aromatrack_coaching_reader"
$INFLUX_CMD "GRANT READ ON \"${base}_clinical\" TO aromatrack_clinical_reader"
