"""The DICOMweb client: remote server definitions, outgoing requests and the jobs that copy
instances to and from remote servers (reference §7). Plain functions, no Flask: the routes
live in ``app.dicomweb_client``."""
