"""Orthanc's configuration vocabulary: every key an Orthanc configuration may hold that this
server does not use, with the reason it is ignored.

Sources: the default configuration Debian installs (``/etc/orthanc/*.json``, Orthanc 1.10.1),
Orthanc's ``OrthancServer/Resources/Configuration.json`` up to 1.12, and the sections of the
plugins an Orthanc site commonly loads. Keys this server uses are the fields of
:class:`app.settings.SettingsSchema`; anything in neither place is refused at start-up with a
did-you-mean suggestion (a misspelt ``OverwriteInstance`` must not be silently ignored).
"""

from __future__ import annotations

import difflib

_DIMSE = "the DICOM network protocol (DIMSE) is not served: this is a DICOMweb server"
_PLUGINS = "Orthanc plugins and Lua scripts do not apply: this server is not Orthanc"
_EXPLORER = "Orthanc Explorer and WebDAV are not served"
_JOBS = "Orthanc's archive jobs and their thread pools are not part of this server"
_STORAGE = "an Orthanc storage or database internal with no equivalent here"
_TRANSCODE = "ingest transcoding is not offered; WADO-RS converts on retrieval"
_HTTP = "an Orthanc HTTP-server tuning knob; gunicorn is configured in the Gunicorn section"
_CLIENT = ("an option of Orthanc's outgoing HTTP client this server does not have (libcurl "
           "traces; keys on PKCS#11 tokens: give the client key as a file)")
_PEERS = "Orthanc peers (the Orthanc-to-Orthanc protocol) are not served"
_LOGS = "an Orthanc logging or diagnostics option"
_PLUGIN_SECTION = "the configuration section of an Orthanc plugin this server does not have"

IGNORED: dict[str, str] = {
    **dict.fromkeys((
        "DicomServerEnabled", "DicomAet", "DicomCheckCalledAet", "DicomPort",
        "AcceptedTransferSyntaxes", "DeflatedTransferSyntaxAccepted",
        "JpegTransferSyntaxAccepted", "Jpeg2000TransferSyntaxAccepted",
        "JpegLosslessTransferSyntaxAccepted", "JpipTransferSyntaxAccepted",
        "Mpeg2TransferSyntaxAccepted", "RleTransferSyntaxAccepted",
        "Mpeg4TransferSyntaxAccepted", "H265TransferSyntaxAccepted",
        "UnknownSopClassAccepted", "AcceptedSopClasses", "RejectedSopClasses",
        "DicomScpTimeout", "DicomTlsEnabled", "DicomTlsRemoteCertificateRequired",
        "DicomTlsCertificate", "DicomTlsPrivateKey", "DicomTlsTrustedCertificates",
        "DicomTlsMinimumProtocolVersion", "DicomTlsCiphersAccepted", "DicomAlwaysAllowEcho",
        "DicomAlwaysAllowStore", "DicomAlwaysAllowFind", "DicomAlwaysAllowFindWorklist",
        "DicomAlwaysAllowGet", "DicomAlwaysAllowMove", "DicomCheckModalityHost",
        "DicomModalities", "DicomModalitiesInDatabase", "DicomEchoChecksFind",
        "DicomScuTimeout", "DicomScuPreferredTransferSyntax", "DicomThreadsCount",
        "StrictAetComparison", "DicomAssociationCloseDelay", "QueryRetrieveSize",
        "SynchronousCMove", "StorageCommitmentReportsSize", "TranscodeDicomProtocol",
        "MaximumPduLength", "DicomLossyTranscodingQuality", "Worklists",
    ), _DIMSE),
    **dict.fromkeys(("Plugins", "LuaScripts", "LuaHeartBeatPeriod", "ExecuteLuaEnabled",
                     "RestApiWriteToFileSystemEnabled"), _PLUGINS),
    **dict.fromkeys(("OrthancExplorerEnabled", "WebDavEnabled", "WebDavDeleteAllowed",
                     "WebDavUploadAllowed", "ServeFolders"), _EXPLORER),
    **dict.fromkeys(("JobsEngineThreadsCount", "MediaArchiveSize", "ZipLoaderThreads",
                     "SynchronousZipStream"), _JOBS),
    "SaveJobs": "jobs are always saved: they live in the Index and survive a restart",
    "LimitJobs": "jobs waiting to run are not limited (submitting never blocks); "
                 "ConcurrentJobs limits the jobs running",
    **dict.fromkeys((
        "MaximumStorageCacheSize", "StoreMD5ForAttachments", "StoreDicom", "SyncStorageArea",
        "TemporaryDirectory", "StorageAccessOnFind", "CheckRevisions", "UserMetadata",
        "UserContentType", "StableAge", "LogExportedResources", "DatabaseServerIdentifier",
        "MallocArenaMax", "Locale", "ReadOnlyIndex", "Housekeeper",
    ), _STORAGE),
    **dict.fromkeys(("IngestTranscoding", "IngestTranscodingOfUncompressed",
                     "IngestTranscodingOfCompressed", "BuiltinDecoderTranscoderOrder"),
                    _TRANSCODE),
    **dict.fromkeys(("HttpServerEnabled", "HttpCompressionEnabled", "HttpThreadsCount",
                     "TcpNoDelay", "HttpServerMaxHeaderSize"), _HTTP),
    **dict.fromkeys(("HttpVerbose", "Pkcs11"), _CLIENT),
    **dict.fromkeys(("OrthancPeers", "OrthancPeersInDatabase"), _PEERS),
    **dict.fromkeys(("MetricsEnabled", "DeidentifyLogs", "DeidentifyLogsDicomVersion",
                     "Warnings", "LogCategories"), _LOGS),
    **dict.fromkeys((
        "WebViewer", "StoneWebViewer", "OrthancExplorer2", "Authorization", "Gdcm",
        "Transfers", "Python", "PythonScript", "PythonVerbose", "MySQL", "Odbc",
        "DelayedDeletion", "Indexer", "Wsi", "Tcia", "GoogleCloudPlatform",
        "AzureBlobStorage", "GoogleCloudStorage", "Ohif", "VolView", "Kitware",
        "AdvancedStorage", "MultitenantDicom", "Neuro", "Education", "ConnectivityChecks",
        "Serve", "Orthanc", "HousekeeperPlugin", "Worklist",
    ), _PLUGIN_SECTION),
}

def suggestion(key: str, known: list[str] | set[str]) -> str:
    """`` (did you mean "X"?)`` for the closest known key, or ``""``."""
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
    if not close:
        lowered = {k.lower(): k for k in known}
        close = [lowered[key.lower()]] if key.lower() in lowered else []
    return f' (did you mean "{close[0]}"?)' if close else ""
