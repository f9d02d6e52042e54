/* credentials.c: placeholder, replaced by the real module in the next commit */
#include "postgres.h"
#include "fmgr.h"
PG_FUNCTION_INFO_V1(pgbank_register);
Datum pgbank_register(PG_FUNCTION_ARGS);
Datum
pgbank_register(PG_FUNCTION_ARGS)
{
	ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("not yet")));
}
PG_FUNCTION_INFO_V1(pgbank_login);
Datum pgbank_login(PG_FUNCTION_ARGS);
Datum
pgbank_login(PG_FUNCTION_ARGS)
{
	ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("not yet")));
}
PG_FUNCTION_INFO_V1(pgbank_refresh);
Datum pgbank_refresh(PG_FUNCTION_ARGS);
Datum
pgbank_refresh(PG_FUNCTION_ARGS)
{
	ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("not yet")));
}
PG_FUNCTION_INFO_V1(pgbank_logout);
Datum pgbank_logout(PG_FUNCTION_ARGS);
Datum
pgbank_logout(PG_FUNCTION_ARGS)
{
	ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("not yet")));
}
PG_FUNCTION_INFO_V1(pgbank_change_password);
Datum pgbank_change_password(PG_FUNCTION_ARGS);
Datum
pgbank_change_password(PG_FUNCTION_ARGS)
{
	ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("not yet")));
}
PG_FUNCTION_INFO_V1(pgbank_mfa_enroll);
Datum pgbank_mfa_enroll(PG_FUNCTION_ARGS);
Datum
pgbank_mfa_enroll(PG_FUNCTION_ARGS)
{
	ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("not yet")));
}
PG_FUNCTION_INFO_V1(pgbank_mfa_confirm);
Datum pgbank_mfa_confirm(PG_FUNCTION_ARGS);
Datum
pgbank_mfa_confirm(PG_FUNCTION_ARGS)
{
	ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("not yet")));
}
PG_FUNCTION_INFO_V1(pgbank_mfa_disable);
Datum pgbank_mfa_disable(PG_FUNCTION_ARGS);
Datum
pgbank_mfa_disable(PG_FUNCTION_ARGS)
{
	ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("not yet")));
}
PG_FUNCTION_INFO_V1(pgbank_totp_code);
Datum pgbank_totp_code(PG_FUNCTION_ARGS);
Datum
pgbank_totp_code(PG_FUNCTION_ARGS)
{
	ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("not yet")));
}
PG_FUNCTION_INFO_V1(pgbank_set_kyc_status);
Datum pgbank_set_kyc_status(PG_FUNCTION_ARGS);
Datum
pgbank_set_kyc_status(PG_FUNCTION_ARGS)
{
	ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("not yet")));
}
PG_FUNCTION_INFO_V1(pgbank_create_api_key);
Datum pgbank_create_api_key(PG_FUNCTION_ARGS);
Datum
pgbank_create_api_key(PG_FUNCTION_ARGS)
{
	ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("not yet")));
}
PG_FUNCTION_INFO_V1(pgbank_revoke_api_key);
Datum pgbank_revoke_api_key(PG_FUNCTION_ARGS);
Datum
pgbank_revoke_api_key(PG_FUNCTION_ARGS)
{
	ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("not yet")));
}
PG_FUNCTION_INFO_V1(pgbank_list_api_keys);
Datum pgbank_list_api_keys(PG_FUNCTION_ARGS);
Datum
pgbank_list_api_keys(PG_FUNCTION_ARGS)
{
	ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("not yet")));
}
