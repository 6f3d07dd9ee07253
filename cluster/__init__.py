"""citus-cluster: a highly available Citus + PostGIS cluster declared as a Pulumi program."""
