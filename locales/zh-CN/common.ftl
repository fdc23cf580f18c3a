# 通用词汇：页面框架、登录、个人设置、错误、时长。

app-name = 保管库
skip-to-content = 跳到正文
nav-label = 主导航
nav-home = 首页
nav-accounts = 账户管理
nav-scrub = 完整性巡检
nav-audit = 审计日志
nav-search = 档案检索
nav-categories = 档案类别
nav-file-record = 档案登记
nav-my-requests = 我的申请
nav-approvals = 审批
nav-grants = 有效授权
nav-loans = 借阅台
nav-locations = 库房
nav-settings = 个人设置
nav-password = 修改密码
nav-menu = 菜单
sign-out = 退出
signed-in-as = 当前用户：{ $name }
language = 语言
language-switch = 切换语言

login-title = 登录
login-username = 用户名
login-password = 密码
login-submit = 登录
login-intro = 请使用管理员为您开设的账户登录。

password-title = 修改密码
password-must-change = 继续之前，请先设置新密码。
password-current = 当前密码
password-new = 新密码
password-new-hint = 至少 { $min } 个字符。
password-confirm = 再次输入新密码
password-submit = 修改密码

settings-title = 个人设置
settings-language = 界面语言
settings-language-browser = 跟随浏览器
settings-time-zone = 时区
settings-time-zone-vault = 系统默认（{ $zone }）
settings-time-zone-hint = 所有时间均按此时区显示。
settings-submit = 保存设置
settings-saved = 设置已保存。
settings-now = 当前时间：{ $now }

error-title = 错误 { $status }
error-back = 返回首页
error-sign-in = 重新登录
form-errors-title = 表单未能保存，请修改以下内容：
form-required = 必填
optional = 选填
confirm-title = 请确认
cancel = 取消
save = 保存
back = 返回
yes = 是
no = 否
none = —
actions = 操作
show = 显示
filter = 筛选
clear = 清除
download-csv = 下载 CSV
download-xlsx = 下载 Excel (.xlsx)
previous-page = 上一页
next-page = 下一页
page-of = 第 { $page } 页，共 { $pages } 页

duration-days-hours = { $days } 天 { $hours } 小时
duration-hours-minutes = { $hours } 小时 { $minutes } 分钟
duration-minutes = { $minutes } 分钟
duration-under-a-minute = 不到 1 分钟

role-archivist = 档案管理员
role-employee = 员工
role-supervisor = 主管
role-auditor = 审计员
role-admin = 系统管理员

field-username = 用户名
field-password = 密码
field-new_password = 新密码
field-confirm_password = 确认密码
field-current_password = 当前密码
field-display_name = 姓名
field-department = 部门
field-roles = 角色
field-time_zone = 时区
field-title = 题名
field-purpose = 用途

flash-settings-saved = 设置已保存。
flash-password-changed = 密码已修改。
error-unavailable = 服务暂时不可用，并非您的操作所致，请几分钟后重试。
